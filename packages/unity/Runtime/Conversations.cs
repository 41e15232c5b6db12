// The conversation API (/api/v0.3/conversations) for Unity and .NET, as
// client.Conversations: list your conversations newest first (a page at a
// time, with a cursor), read one with its messages and its running turn,
// rename, delete. Fetched conversations are cached until invalidated: by
// Invalidate/InvalidateAll, by a rename or delete, and by a chat in that
// conversation. A missing conversation (or another user's) is a
// ConvokeHttpException with Status 404.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>The statuses a stored message can have.</summary>
    public static class MessageStatus
    {
        /// <summary>The reply finished.</summary>
        public const string Complete = "complete";
        /// <summary>An unfinished reply stored by older servers.</summary>
        public const string Partial = "partial";
        /// <summary>Stopped, or the client did not come back within the grace window.</summary>
        public const string Cancelled = "cancelled";
        /// <summary>The server running the turn went away.</summary>
        public const string Interrupted = "interrupted";
        /// <summary>The model failed.</summary>
        public const string Error = "error";
        /// <summary>The reply of a turn still running, as far as it got.</summary>
        public const string Streaming = "streaming";
    }

    /// <summary>A conversation as listed.</summary>
    public class ConversationSummary
    {
        internal ConversationSummary(string id, string title, DateTimeOffset createdAt, DateTimeOffset updatedAt)
        {
            Id = id;
            Title = title;
            CreatedAt = createdAt;
            UpdatedAt = updatedAt;
        }

        public string Id { get; private set; }
        public string Title { get; private set; }
        public DateTimeOffset CreatedAt { get; private set; }
        public DateTimeOffset UpdatedAt { get; private set; }
    }

    /// <summary>One stored message.</summary>
    public sealed class ConversationMessage
    {
        internal ConversationMessage(string id, string role, string content, string status, DateTimeOffset createdAt)
        {
            Id = id;
            Role = role;
            Content = content;
            Status = status;
            CreatedAt = createdAt;
        }

        public string Id { get; private set; }
        /// <summary>"user" or "assistant".</summary>
        public string Role { get; private set; }
        public string Content { get; private set; }
        /// <summary>One of <see cref="MessageStatus"/>'s values.</summary>
        public string Status { get; private set; }
        public DateTimeOffset CreatedAt { get; private set; }
    }

    /// <summary>The turn a conversation is running.</summary>
    public sealed class RunningTurn
    {
        internal RunningTurn(string turnId, DateTimeOffset startedAt)
        {
            TurnId = turnId;
            StartedAt = startedAt;
        }

        public string TurnId { get; private set; }
        public DateTimeOffset StartedAt { get; private set; }
    }

    /// <summary>A conversation with its messages, oldest first.</summary>
    public sealed class Conversation : ConversationSummary
    {
        internal Conversation(ConversationSummary summary, IList<ConversationMessage> messages, RunningTurn runningTurn)
            : base(summary.Id, summary.Title, summary.CreatedAt, summary.UpdatedAt)
        {
            Messages = new List<ConversationMessage>(messages).AsReadOnly();
            RunningTurn = runningTurn;
        }

        public IList<ConversationMessage> Messages { get; private set; }
        /// <summary>The turn running now (its reply is the last message, status "streaming"), or null.</summary>
        public RunningTurn RunningTurn { get; private set; }
    }

    /// <summary>One page of <see cref="Conversations.ListAsync"/>.</summary>
    public sealed class ConversationPage
    {
        internal ConversationPage(IList<ConversationSummary> items, string nextCursor)
        {
            Items = new List<ConversationSummary>(items).AsReadOnly();
            NextCursor = nextCursor;
        }

        /// <summary>The conversations of this page, newest first.</summary>
        public IList<ConversationSummary> Items { get; private set; }
        /// <summary>Pass as the cursor to get the next page; null on the last page.</summary>
        public string NextCursor { get; private set; }
    }

    /// <summary>The conversation API; use it through <see cref="ConvokeClient.Conversations"/>.</summary>
    public sealed class Conversations
    {
        /// <summary>The conversations path of the v0.3 API.</summary>
        public const string Path = "/api/v0.3/conversations";

        private readonly ConvokeClient client;
        private readonly Dictionary<string, Conversation> cache = new Dictionary<string, Conversation>();

        internal Conversations(ConvokeClient client)
        {
            this.client = client;
        }

        /// <summary>One page of your conversations, newest first.</summary>
        /// <param name="limit">Page size (the server's default when null; it accepts 1 to 100).</param>
        /// <param name="cursor"><see cref="ConversationPage.NextCursor"/> of the previous page, or null for the first.</param>
        public async Task<ConversationPage> ListAsync(
            int? limit = null,
            string cursor = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            List<string> query = new List<string>();
            if (limit != null) query.Add("limit=" + limit.Value.ToString(CultureInfo.InvariantCulture));
            if (!string.IsNullOrEmpty(cursor)) query.Add("cursor=" + Uri.EscapeDataString(cursor));
            string path = Path + (query.Count == 0 ? "" : "?" + string.Join("&", query.ToArray()));
            object body = await client.GetJsonAsync(path, cancellationToken).ConfigureAwait(false);
            List<object> data = Member(body, "data") as List<object>;
            if (data == null) throw new ConvokeProtocolException("The conversation list has no data array");
            List<ConversationSummary> items = new List<ConversationSummary>();
            foreach (object item in data) items.Add(Summary(item));
            return new ConversationPage(items, Json.GetString(body, "next_cursor"));
        }

        /// <summary>
        /// A conversation with its messages: the cached copy when there is one,
        /// else fetched (and cached unless a turn is running in it).
        /// </summary>
        public async Task<Conversation> GetAsync(string id, CancellationToken cancellationToken = default(CancellationToken))
        {
            Conversation cached;
            if (TryGetCached(id, out cached)) return cached;
            return await FetchAsync(id, cancellationToken).ConfigureAwait(false);
        }

        /// <summary>A conversation with its messages, always from the server (the cache is updated).</summary>
        public async Task<Conversation> FetchAsync(string id, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (id == null) throw new ArgumentNullException("id");
            object body = await client.GetJsonAsync(PathOf(id), cancellationToken).ConfigureAwait(false);
            List<ConversationMessage> messages = new List<ConversationMessage>();
            List<object> rawMessages = Member(body, "messages") as List<object>;
            if (rawMessages != null)
            {
                foreach (object raw in rawMessages)
                {
                    messages.Add(new ConversationMessage(
                        Json.GetString(raw, "id"),
                        Json.GetString(raw, "role"),
                        Json.GetString(raw, "content") ?? "",
                        Json.GetString(raw, "status") ?? MessageStatus.Complete,
                        Date(Json.GetString(raw, "created_at"))));
                }
            }
            Dictionary<string, object> running = Json.GetObject(body, "running_turn");
            Conversation conversation = new Conversation(
                Summary(body),
                messages,
                running == null ? null : new RunningTurn(Json.GetString(running, "turn_id"), Date(Json.GetString(running, "started_at"))));
            lock (cache)
            {
                // A running turn changes the conversation as it goes: nothing to keep.
                if (conversation.RunningTurn == null) cache[id] = conversation;
                else cache.Remove(id);
            }
            return conversation;
        }

        /// <summary>Renames a conversation; returns it as stored (without its messages).</summary>
        public async Task<ConversationSummary> RenameAsync(
            string id,
            string title,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (id == null) throw new ArgumentNullException("id");
            if (title == null) throw new ArgumentNullException("title");
            Invalidate(id);
            object body = await client
                .SendJsonAsync("PATCH", PathOf(id), "{\"title\":" + Json.Quote(title) + "}", cancellationToken)
                .ConfigureAwait(false);
            Invalidate(id);
            return Summary(body);
        }

        /// <summary>Deletes a conversation and its messages.</summary>
        public async Task DeleteAsync(string id, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (id == null) throw new ArgumentNullException("id");
            Invalidate(id);
            await client.SendJsonAsync("DELETE", PathOf(id), null, cancellationToken).ConfigureAwait(false);
            Invalidate(id);
        }

        /// <summary>The cached copy of a conversation, if there is one.</summary>
        public bool TryGetCached(string id, out Conversation conversation)
        {
            lock (cache) return cache.TryGetValue(id, out conversation);
        }

        /// <summary>Drops the cached copy of a conversation: the next <see cref="GetAsync"/> fetches it.</summary>
        public void Invalidate(string id)
        {
            if (id == null) return;
            lock (cache) cache.Remove(id);
        }

        /// <summary>Drops every cached conversation.</summary>
        public void InvalidateAll()
        {
            lock (cache) cache.Clear();
        }

        internal static string PathOf(string id)
        {
            return Path + "/" + Uri.EscapeDataString(id);
        }

        private static object Member(object value, string key)
        {
            Dictionary<string, object> map = value as Dictionary<string, object>;
            object member;
            return map != null && map.TryGetValue(key, out member) ? member : null;
        }

        private static ConversationSummary Summary(object raw)
        {
            string id = Json.GetString(raw, "id");
            if (id == null) throw new ConvokeProtocolException("A conversation has no id");
            return new ConversationSummary(
                id,
                Json.GetString(raw, "title") ?? "",
                Date(Json.GetString(raw, "created_at")),
                Date(Json.GetString(raw, "updated_at")));
        }

        private static DateTimeOffset Date(string text)
        {
            DateTimeOffset date;
            return text != null && DateTimeOffset.TryParse(
                text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out date)
                ? date
                : default(DateTimeOffset);
        }
    }
}
