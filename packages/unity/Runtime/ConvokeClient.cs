// The Convoke client for Unity and .NET: Chat() streams a reply and raises
// the conversation id as soon as the first event arrives. Parsing, retries,
// resuming a broken stream and errors live here once, for both ways a turn
// travels: a Server-Sent Events response per turn (IChatTransport; the
// transports only move bytes), or frames on one shared WebSocket
// (UseWebSocket; SocketChannel).
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>Options of <see cref="ConvokeClient"/>.</summary>
    public sealed class ConvokeClientOptions
    {
        public ConvokeClientOptions()
        {
            MaxRetries = 2;
            RetryBaseDelay = TimeSpan.FromMilliseconds(250);
            MaxRetryDelay = TimeSpan.FromSeconds(10);
            ResumeAttempts = 5;
            ResumeBaseDelay = TimeSpan.FromMilliseconds(250);
            MaxResumeDelay = TimeSpan.FromSeconds(5);
            ConversationKey = "default";
            WebSocketConnectTimeout = TimeSpan.FromSeconds(20);
        }

        /// <summary>The server, e.g. "https://chat.example.com".</summary>
        public string BaseUrl { get; set; }

        /// <summary>Sent as "Authorization: Bearer &lt;key&gt;" when set.</summary>
        public string ApiKey { get; set; }

        /// <summary>
        /// How HTTP requests travel (default: a new <see cref="HttpClientTransport"/>):
        /// every request, or with <see cref="UseWebSocket"/> the REST calls only.
        /// </summary>
        public IChatTransport Transport { get; set; }

        /// <summary>
        /// Streams turns over one WebSocket (<c>GET /api/v0.3/ws</c>) shared by
        /// every turn, instead of one HTTP request per turn. The stream API is
        /// the same; the conversations API stays on HTTP. Default false.
        /// </summary>
        public bool UseWebSocket { get; set; }

        /// <summary>
        /// Makes the WebSocket connections when <see cref="UseWebSocket"/> is
        /// set (default: a new <see cref="ClientWebSocketConnection"/> each).
        /// Unity WebGL needs one backed by the browser's WebSocket.
        /// </summary>
        public Func<IWebSocketConnection> WebSocketFactory { get; set; }

        /// <summary>How long opening a WebSocket may take before it counts as a network error (default 20 s).</summary>
        public TimeSpan WebSocketConnectTimeout { get; set; }

        /// <summary>
        /// Retries of network errors, 429 and 503, only before the metadata
        /// event (a started reply is never sent twice). Default 2; 0 disables.
        /// </summary>
        public int MaxRetries { get; set; }

        /// <summary>First backoff delay, doubled each retry (default 250 ms).</summary>
        public TimeSpan RetryBaseDelay { get; set; }

        /// <summary>Longest wait between attempts; a longer Retry-After is not waited for (default 10 s).</summary>
        public TimeSpan MaxRetryDelay { get; set; }

        /// <summary>
        /// Reconnections to a reply whose connection broke after the metadata
        /// event (the stream's state is Reconnecting meanwhile); each one that
        /// gets the stream going again starts the count afresh. Default 5; 0
        /// disables: the stream then fails with a ConvokeNetworkException.
        /// </summary>
        public int ResumeAttempts { get; set; }

        /// <summary>First wait before reconnecting, doubled each attempt, with jitter (default 250 ms).</summary>
        public TimeSpan ResumeBaseDelay { get; set; }

        /// <summary>Longest wait between reconnections (default 5 s).</summary>
        public TimeSpan MaxResumeDelay { get; set; }

        /// <summary>
        /// Remembers the current conversation: Chat() without an id continues
        /// the stored one, and each reply's conversation id is stored. Null
        /// (the default) remembers nothing.
        /// </summary>
        public IConversationIdStore ConversationIdStore { get; set; }

        /// <summary>The key under which <see cref="ConversationIdStore"/> keeps the id (default "default").</summary>
        public string ConversationKey { get; set; }
    }

    /// <summary>Talks to a Convoke server; create one and reuse it.</summary>
    public sealed class ConvokeClient : IDisposable
    {
        /// <summary>The chat path of the v0.3 API.</summary>
        public const string ChatPath = "/api/v0.3/chat";

        /// <summary>The WebSocket path of the v0.3 API.</summary>
        public const string SocketPath = "/api/v0.3/ws";

        /// <summary>The path that issues WebSocket tickets, for connections that cannot set headers.</summary>
        public const string TicketPath = "/api/v0.3/ws/ticket";

        /// <summary>This package's version (package.json's "version").</summary>
        public const string Version = "0.1.0";

        /// <summary>The header that tells the server which kind of client calls (counted in its metrics).</summary>
        public const string ClientHeader = "X-Convoke-Client";

        /// <summary>The value of <see cref="ClientHeader"/> on every request: "unity/&lt;version&gt;".</summary>
        public const string ClientHeaderValue = "unity/" + Version;

        private readonly ConvokeClientOptions options;
        private readonly IChatTransport transport;
        private readonly bool ownsTransport;
        private readonly string baseUrl;
        private readonly Random jitter = new Random();
        private readonly Conversations conversations;
        private readonly SocketChannel channel;

        /// <summary>A client for the server at <paramref name="baseUrl"/>, with default options.</summary>
        public ConvokeClient(string baseUrl) : this(new ConvokeClientOptions { BaseUrl = baseUrl }) { }

        public ConvokeClient(ConvokeClientOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (string.IsNullOrEmpty(options.BaseUrl)) throw new ArgumentException("BaseUrl is required", "options");
            this.options = options;
            baseUrl = options.BaseUrl.TrimEnd('/');
            ownsTransport = options.Transport == null;
            transport = options.Transport ?? new HttpClientTransport();
            conversations = new Conversations(this);
            if (options.UseWebSocket)
            {
#if UNITY_WEBGL && !UNITY_EDITOR
                if (options.WebSocketFactory == null)
                    throw new NotSupportedException(
                        "ClientWebSocket does not exist in WebGL builds: set WebSocketFactory to a connection on the browser's WebSocket (a .jslib bridge), or use the HTTP transport");
#endif
                Func<IWebSocketConnection> factory = options.WebSocketFactory ?? (() => new ClientWebSocketConnection());
                channel = new SocketChannel(factory, new Opener(this), options.WebSocketConnectTimeout);
            }
        }

        /// <summary>A client for the server at <paramref name="baseUrl"/> whose turns travel over one WebSocket.</summary>
        public static ConvokeClient WithWebSocket(string baseUrl, string apiKey = null)
        {
            return new ConvokeClient(new ConvokeClientOptions { BaseUrl = baseUrl, ApiKey = apiKey, UseWebSocket = true });
        }

        /// <summary>List, read, rename and delete conversations; fetched ones are cached.</summary>
        public Conversations Conversations { get { return conversations; } }

        /// <summary>The remembered conversation id for <paramref name="key"/> (default: the options' key), or null.</summary>
        public string CurrentConversationId(string key = null)
        {
            IConversationIdStore store = options.ConversationIdStore;
            if (store == null) return null;
            try
            {
                return store.Get(key ?? options.ConversationKey);
            }
            catch (Exception error)
            {
                System.Diagnostics.Trace.TraceWarning("Convoke: the conversation id store failed: " + error.Message);
                return null;
            }
        }

        /// <summary>Forgets the remembered conversation: the next Chat() without an id starts a new one.</summary>
        public void ForgetConversation(string key = null)
        {
            IConversationIdStore store = options.ConversationIdStore;
            if (store != null) store.Clear(key ?? options.ConversationKey);
        }

        /// <summary>
        /// Sends a message and streams the reply. Returns at once; subscribe to
        /// the stream's events or await its tasks.
        /// </summary>
        /// <param name="message">The user's message.</param>
        /// <param name="conversationId">
        /// The conversation to continue; "new" starts one. Null continues the
        /// conversation remembered by <see cref="ConvokeClientOptions.ConversationIdStore"/>,
        /// or starts one when there is none. An id the server does not know
        /// starts a new conversation: compare the id you get.
        /// </param>
        /// <param name="model">A model from the server's allow-list, or null.</param>
        /// <param name="cancellationToken">Cancels like <see cref="ChatStream.Cancel"/>.</param>
        public ChatStream Chat(
            string message,
            string conversationId = null,
            string model = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (message == null) throw new ArgumentNullException("message");
            CancellationTokenSource linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            ChatStream stream = new ChatStream(SynchronizationContext.Current, linked);
            if (conversationId == null) conversationId = CurrentConversationId();
            Turn turn = new Turn(message, conversationId, model);
            IConversationIdStore store = options.ConversationIdStore;
            string key = options.ConversationKey;
            // Handlers run on the caller's context: Unity's PlayerPrefs must be used on the main thread.
            stream.MetadataReceived += received =>
            {
                conversations.Invalidate(received.ConversationId);
                if (store == null) return;
                try
                {
                    store.Set(key, received.ConversationId);
                }
                catch (Exception error)
                {
                    System.Diagnostics.Trace.TraceWarning("Convoke: the conversation id store failed: " + error.Message);
                }
            };
            stream.SetStopper(() => StopAsync(stream, turn, linked));
            RunAsync(stream, turn, linked);
            return stream;
        }

        private async void RunAsync(ChatStream stream, Turn turn, CancellationTokenSource cancellation)
        {
            // async void is deliberate: every outcome is delivered through the
            // stream, and nothing here may throw past this method.
            try
            {
                CancellationToken token = cancellation.Token;
                Exception failure = await RunAttemptsAsync(stream, turn, token);
                if (failure is ConvokeNetworkException && turn.TurnId != null && !turn.Stopping && options.ResumeAttempts > 0)
                    failure = await ResumeAsync(stream, turn, (ConvokeNetworkException)failure, token);
                conversations.Invalidate(turn.ConversationId);
                if (turn.Stopping) stream.OnStopped();
                else if (failure == null) stream.OnCompleted();
                else stream.OnFailed(failure);
            }
            catch (Exception unexpected)
            {
                stream.OnFailed(new ConvokeException("Unexpected failure: " + unexpected.Message, unexpected));
            }
            finally
            {
                cancellation.Dispose();
            }
        }

        private async Task<Exception> RunAttemptsAsync(ChatStream stream, Turn turn, CancellationToken token)
        {
            for (int attempt = 0; ; attempt++)
            {
                Attempt sent = await SendOnceAsync(stream, turn, false, token);
                Exception failure = sent.Failure;
                if (failure == null || failure is OperationCanceledException) return failure;
                // The attempt, not the stream, knows: the stream may see events later, on its context.
                TimeSpan? delay = !sent.SawMetadata && attempt < options.MaxRetries
                    ? RetryDelay(failure, attempt)
                    : null;
                if (delay == null) return failure;
                try
                {
                    await Task.Delay(delay.Value, token);
                }
                catch (OperationCanceledException)
                {
                    return new OperationCanceledException(token);
                }
            }
        }

        /// <summary>What one connection of a turn came to.</summary>
        private struct Attempt
        {
            /// <summary>Null when the reply completed (or, resuming, there was nothing to replay), else why not.</summary>
            public Exception Failure;
            /// <summary>Whether this connection delivered its metadata event.</summary>
            public bool SawMetadata;
            /// <summary>A resume found nothing to replay (HTTP's 204, the socket's no_turn).</summary>
            public bool NoTurn;
        }

        /// <summary>
        /// Sends the turn's message (or, <paramref name="resuming"/>, follows
        /// it after the last event received) over one connection: an HTTP
        /// request, or a request on the shared WebSocket.
        /// </summary>
        private Task<Attempt> SendOnceAsync(ChatStream stream, Turn turn, bool resuming, CancellationToken token)
        {
            return channel != null
                ? SendOnSocketAsync(stream, turn, resuming, token)
                : SendOverHttpAsync(stream, turn, resuming, token);
        }

        private async Task<Attempt> SendOverHttpAsync(ChatStream stream, Turn turn, bool resuming, CancellationToken token)
        {
            TransportRequest request;
            if (resuming)
            {
                Dictionary<string, string> headers = Headers("text/event-stream");
                headers["Last-Event-ID"] = turn.LastEventId ?? turn.TurnId + ":0";
                request = new TransportRequest
                {
                    Method = "GET",
                    Url = baseUrl + Conversations.PathOf(turn.ConversationId) + "/stream",
                    Headers = headers
                };
            }
            else
            {
                StringBuilder body = new StringBuilder();
                body.Append("{\"message\":").Append(Json.Quote(turn.Message)).Append(",\"stream\":true");
                AppendChatFields(body, turn);
                body.Append('}');
                request = new TransportRequest
                {
                    Method = "POST",
                    Url = baseUrl + ChatPath,
                    Headers = Headers("text/event-stream"),
                    JsonBody = body.ToString()
                };
            }
            ChatReceiver receiver = new ChatReceiver(new TurnReader(stream, turn, resuming));
            Exception failure = await ReceiveAsync(request, receiver, turn, token);
            return new Attempt { Failure = failure, SawMetadata = receiver.SawMetadata, NoTurn = receiver.Status == 204 };
        }

        private static void AppendChatFields(StringBuilder body, Turn turn)
        {
            if (turn.RequestedConversationId != null)
                body.Append(",\"conversation_id\":").Append(Json.Quote(turn.RequestedConversationId));
            if (turn.Model != null) body.Append(",\"model\":").Append(Json.Quote(turn.Model));
        }

        /// <summary>
        /// One request on the shared socket: <c>chat.send</c>, or <c>chat.resume</c>
        /// with the last event id. Cancelling stops listening to the request;
        /// the socket stays open for the other turns.
        /// </summary>
        private async Task<Attempt> SendOnSocketAsync(ChatStream stream, Turn turn, bool resuming, CancellationToken token)
        {
            string requestId = channel.NextRequestId(resuming ? "resume" : "chat");
            StringBuilder frame = new StringBuilder();
            if (resuming)
            {
                frame.Append("{\"type\":\"chat.resume\",\"request_id\":").Append(Json.Quote(requestId))
                    .Append(",\"conversation_id\":").Append(Json.Quote(turn.ConversationId))
                    .Append(",\"last_event_id\":").Append(Json.Quote(turn.LastEventId ?? turn.TurnId + ":0"));
            }
            else
            {
                frame.Append("{\"type\":\"chat.send\",\"request_id\":").Append(Json.Quote(requestId))
                    .Append(",\"message\":").Append(Json.Quote(turn.Message));
                AppendChatFields(frame, turn);
            }
            frame.Append('}');
            SocketReceiver receiver = new SocketReceiver(new TurnReader(stream, turn, resuming));
            IDisposable registration = null;
            try
            {
                registration = await channel.SendAsync(requestId, receiver, frame.ToString(), token);
                TaskCompletionSource<bool> cancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                using (token.Register(() => cancelled.TrySetResult(true)))
                {
                    await Task.WhenAny(receiver.Finished, cancelled.Task);
                }
                if (!receiver.Finished.IsCompleted) return new Attempt { Failure = new OperationCanceledException(token) };
                return new Attempt { Failure = receiver.Outcome(), SawMetadata = receiver.SawMetadata, NoTurn = receiver.NoTurn };
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return new Attempt { Failure = new OperationCanceledException(token) };
            }
            catch (ConvokeException error)
            {
                return new Attempt { Failure = error };
            }
            catch (Exception error)
            {
                if (token.IsCancellationRequested) return new Attempt { Failure = new OperationCanceledException(token) };
                return new Attempt { Failure = new ConvokeNetworkException("WebSocket request failed: " + error.Message, error, turn.ConversationId) };
            }
            finally
            {
                if (registration != null) registration.Dispose();
            }
        }

        /// <summary>Sends one streaming request; null when the reply completed, else why it did not.</summary>
        private async Task<Exception> ReceiveAsync(TransportRequest request, ChatReceiver receiver, Turn turn, CancellationToken token)
        {
            try
            {
                await transport.SendAsync(request, receiver, token);
                return receiver.Outcome();
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return new OperationCanceledException(token);
            }
            catch (ConvokeException error)
            {
                return error;
            }
            catch (Exception error)
            {
                if (token.IsCancellationRequested) return new OperationCanceledException(token);
                return new ConvokeNetworkException("Request failed: " + error.Message, error, turn.ConversationId);
            }
        }

        /// <summary>
        /// Reconnects to the turn after its connection broke: the resume
        /// endpoint (or chat.resume on a new socket) replays what came after
        /// the last event received, then the live events. A 204 or no_turn
        /// (nothing left to replay) finishes from the stored reply.
        /// </summary>
        private async Task<Exception> ResumeAsync(ChatStream stream, Turn turn, ConvokeNetworkException broken, CancellationToken token)
        {
            Exception failure = broken;
            stream.OnStateChanged(ChatStreamState.Reconnecting);
            for (int attempt = 0; attempt < options.ResumeAttempts; attempt++)
            {
                try
                {
                    await Task.Delay(Backoff(options.ResumeBaseDelay, options.MaxResumeDelay, attempt), token);
                }
                catch (OperationCanceledException)
                {
                    return new OperationCanceledException(token);
                }
                if (turn.Stopping) return null;
                long seqBefore = turn.LastSeq;
                Attempt resumed = await SendOnceAsync(stream, turn, true, token);
                failure = resumed.Failure;
                if (resumed.NoTurn) return await FinishFromStoreAsync(stream, turn, token);
                if (failure == null || failure is OperationCanceledException || failure is ConvokeStreamException) return failure;
                ConvokeHttpException http = failure as ConvokeHttpException;
                if (http != null && http.Status != 429 && http.Status != 503) return failure;
                if (failure is ConvokeProtocolException) return failure;
                if (resumed.SawMetadata)
                {
                    // The stream got going again before it broke: start counting afresh.
                    if (turn.LastSeq > seqBefore) attempt = -1;
                    stream.OnStateChanged(ChatStreamState.Reconnecting);
                }
            }
            return failure;
        }

        /// <summary>
        /// Nothing is left to replay (the turn ended long ago, or another turn
        /// started since): the reply is read from the conversation, and what of
        /// it had not arrived is delivered as one last delta.
        /// </summary>
        private async Task<Exception> FinishFromStoreAsync(ChatStream stream, Turn turn, CancellationToken token)
        {
            Conversation conversation;
            try
            {
                conversation = await conversations.FetchAsync(turn.ConversationId, token);
            }
            catch (OperationCanceledException)
            {
                return new OperationCanceledException(token);
            }
            catch (ConvokeException error)
            {
                return error;
            }
            catch (Exception error)
            {
                return new ConvokeNetworkException("Reading the stored reply failed: " + error.Message, error, turn.ConversationId);
            }
            ConversationMessage reply = StoredReply(conversation.Messages, turn.Message);
            if (reply == null || reply.Status == MessageStatus.Streaming)
                return new ConvokeNetworkException("The connection broke and the reply is not stored yet", null, turn.ConversationId);
            string received = turn.Text.ToString();
            if (!reply.Content.StartsWith(received, StringComparison.Ordinal))
                return new ConvokeProtocolException("The stored reply does not continue the text received");
            string rest = reply.Content.Substring(received.Length);
            if (rest.Length > 0)
            {
                turn.Text.Append(rest);
                stream.OnDelta(rest);
            }
            if (reply.Status == MessageStatus.Complete || reply.Status == MessageStatus.Partial) return null;
            return new ConvokeStreamException(
                reply.Status,
                "The reply ended with status \"" + reply.Status + "\"",
                turn.ConversationId,
                turn.Text.ToString());
        }

        // The reply to the message sent: the assistant message after the last
        // user message with that text, else the last assistant message that
        // is not streaming (a newer turn may have come after it).
        private static ConversationMessage StoredReply(IList<ConversationMessage> messages, string sent)
        {
            for (int index = messages.Count - 2; index >= 0; index--)
            {
                if (messages[index].Role == "user" && messages[index].Content == sent && messages[index + 1].Role == "assistant")
                    return messages[index + 1];
            }
            for (int index = messages.Count - 1; index >= 0; index--)
            {
                if (messages[index].Role == "assistant" && messages[index].Status != MessageStatus.Streaming)
                    return messages[index];
            }
            return null;
        }

        private async Task StopAsync(ChatStream stream, Turn turn, CancellationTokenSource cancellation)
        {
            string conversationId = turn.ConversationId;
            if (conversationId == null)
            {
                // No turn yet: nothing to stop on the server, the request is cancelled.
                stream.Cancel();
                return;
            }
            turn.Stopping = true;
            stream.OnStopped();
            try
            {
                cancellation.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The stream has already finished.
            }
            try
            {
                if (channel != null) await StopOnSocketAsync(conversationId);
                else await SendJsonAsync("POST", Conversations.PathOf(conversationId) + "/stop", null, CancellationToken.None);
            }
            finally
            {
                conversations.Invalidate(conversationId);
            }
        }

        /// <summary>Sends chat.stop on the shared socket and waits for its answer; an error frame throws as its HTTP status would.</summary>
        private async Task StopOnSocketAsync(string conversationId)
        {
            string requestId = channel.NextRequestId("stop");
            string frame = "{\"type\":\"chat.stop\",\"request_id\":" + Json.Quote(requestId)
                + ",\"conversation_id\":" + Json.Quote(conversationId) + "}";
            AnswerListener answer = new AnswerListener();
            using (await channel.SendAsync(requestId, answer, frame, CancellationToken.None))
            {
                Dictionary<string, object> received = await answer.Answer;
                if (Json.GetString(received, "type") == "error") throw SocketError(received);
            }
        }

        /// <summary>
        /// The exception of an error frame for a request that failed before a
        /// turn started: the status and error type the HTTP route would answer.
        /// </summary>
        internal static ConvokeHttpException SocketError(Dictionary<string, object> frame)
        {
            object status;
            object retryAfter;
            int code = frame.TryGetValue("status", out status) && status is double ? (int)(double)status : 0;
            Dictionary<string, object> error = Json.GetObject(frame, "error");
            return new ConvokeHttpException(
                code,
                Json.GetString(error, "type") ?? "http_" + code,
                Json.GetString(error, "message") ?? "Error " + code,
                frame.TryGetValue("retry_after", out retryAfter) && retryAfter is double ? (double?)(double)retryAfter : null);
        }

        /// <summary>The WebSocket URL: the base URL's scheme becomes ws or wss.</summary>
        internal string SocketUrl()
        {
            if (baseUrl.StartsWith("https://", StringComparison.OrdinalIgnoreCase)) return "wss://" + baseUrl.Substring(8) + SocketPath;
            if (baseUrl.StartsWith("http://", StringComparison.OrdinalIgnoreCase)) return "ws://" + baseUrl.Substring(7) + SocketPath;
            return baseUrl + SocketPath;
        }

        /// <summary>Opens sockets for the channel: headers, or a ticket where headers cannot be set.</summary>
        private sealed class Opener : ISocketOpener
        {
            private readonly ConvokeClient client;

            public Opener(ConvokeClient client)
            {
                this.client = client;
            }

            public async Task<SocketTarget> TargetAsync(bool canSetHeaders, CancellationToken cancellationToken)
            {
                if (canSetHeaders)
                {
                    Dictionary<string, string> headers = new Dictionary<string, string> { { ClientHeader, ClientHeaderValue } };
                    if (!string.IsNullOrEmpty(client.options.ApiKey)) headers["Authorization"] = "Bearer " + client.options.ApiKey;
                    return new SocketTarget { Uri = new Uri(client.SocketUrl()), Headers = headers };
                }
                // Browsers and Unity WebGL: a single-use ticket, bought with the credentials over HTTP.
                object issued = await client.SendJsonAsync("POST", TicketPath, null, cancellationToken);
                string ticket = Json.GetString(issued, "ticket");
                if (string.IsNullOrEmpty(ticket)) throw new ConvokeProtocolException("The ticket response has no ticket");
                return new SocketTarget
                {
                    Uri = new Uri(client.SocketUrl() + "?ticket=" + Uri.EscapeDataString(ticket)),
                    Headers = new Dictionary<string, string>()
                };
            }

            /// <summary>
            /// ClientWebSocket does not say which status refused an upgrade, so
            /// the same request is made once more without the upgrade: a refusal
            /// of the credentials or the rate limits (401, 429) comes back with
            /// its common body, as the HTTP transport raises it. A 426 means the
            /// credentials passed (or the server cannot upgrade: AWS Lambda, a
            /// proxy that drops the Upgrade header): a network error.
            /// </summary>
            public async Task<Exception> ExplainRefusalAsync(Exception failure)
            {
                TransportRequest probe = new TransportRequest
                {
                    Method = "GET",
                    Url = client.baseUrl + SocketPath,
                    Headers = client.Headers("application/json")
                };
                BufferingReceiver receiver = new BufferingReceiver();
                try
                {
                    await client.transport.SendAsync(probe, receiver, CancellationToken.None);
                }
                catch (Exception)
                {
                    return new ConvokeNetworkException("Could not open the WebSocket: " + failure.Message, failure, null);
                }
                if (receiver.Status == 426 || (receiver.Status >= 200 && receiver.Status <= 299))
                    return new ConvokeNetworkException(
                        "The server refused the WebSocket upgrade (a server that cannot upgrade, or a proxy that drops the Upgrade header, answers 426): "
                            + failure.Message,
                        failure,
                        null);
                return HttpError(receiver.Status, receiver.Text(), receiver.RetryAfter);
            }
        }

        /// <summary>Waits for the first frame of a request (the answer to chat.stop), or the socket's end.</summary>
        private sealed class AnswerListener : ISocketListener
        {
            private readonly TaskCompletionSource<Dictionary<string, object>> answer =
                new TaskCompletionSource<Dictionary<string, object>>(TaskCreationOptions.RunContinuationsAsynchronously);

            public Task<Dictionary<string, object>> Answer { get { return answer.Task; } }

            public void OnFrame(Dictionary<string, object> frame)
            {
                answer.TrySetResult(frame);
            }

            public void OnClosed(Exception reason)
            {
                answer.TrySetException(reason is ConvokeException
                    ? reason
                    : new ConvokeNetworkException("The WebSocket closed before the answer", reason, null));
            }
        }

        /// <summary>GETs a JSON resource of the API.</summary>
        internal Task<object> GetJsonAsync(string path, CancellationToken token)
        {
            return SendJsonAsync("GET", path, null, token);
        }

        /// <summary>
        /// Sends a request of the REST API and returns its parsed JSON body
        /// (null when empty); an error status is a ConvokeHttpException. 429
        /// and 503 are retried like chats; network errors only for GET. Every
        /// attempt starts on the caller's context (UnityWebRequest needs the
        /// main thread), so nothing here uses ConfigureAwait(false).
        /// </summary>
        internal async Task<object> SendJsonAsync(string method, string path, string jsonBody, CancellationToken token)
        {
            TransportRequest request = new TransportRequest
            {
                Method = method,
                Url = baseUrl + path,
                Headers = Headers("application/json"),
                JsonBody = jsonBody
            };
            for (int attempt = 0; ; attempt++)
            {
                BufferingReceiver receiver = new BufferingReceiver();
                Exception failure;
                try
                {
                    await transport.SendAsync(request, receiver, token);
                    if (receiver.Status >= 200 && receiver.Status <= 299)
                    {
                        string text = receiver.Text();
                        if (text.Trim().Length == 0) return null;
                        try
                        {
                            return Json.Parse(text);
                        }
                        catch (FormatException error)
                        {
                            throw new ConvokeProtocolException("The response is not JSON: " + error.Message);
                        }
                    }
                    failure = HttpError(receiver.Status, receiver.Text(), receiver.RetryAfter);
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    throw;
                }
                catch (ConvokeException)
                {
                    throw;
                }
                catch (Exception error)
                {
                    if (token.IsCancellationRequested) throw new OperationCanceledException(token);
                    failure = new ConvokeNetworkException("Request failed: " + error.Message, error, null);
                }
                TimeSpan? delay = attempt < options.MaxRetries && (method == "GET" || !(failure is ConvokeNetworkException))
                    ? RetryDelay(failure, attempt)
                    : null;
                if (delay == null) throw failure;
                await Task.Delay(delay.Value, token);
            }
        }

        private Dictionary<string, string> Headers(string accept)
        {
            Dictionary<string, string> headers = new Dictionary<string, string>
            {
                { "Accept", accept },
                { ClientHeader, ClientHeaderValue }
            };
            if (!string.IsNullOrEmpty(options.ApiKey)) headers["Authorization"] = "Bearer " + options.ApiKey;
            return headers;
        }

        private TimeSpan Backoff(TimeSpan baseDelay, TimeSpan maxDelay, int attempt)
        {
            double factor;
            lock (jitter) factor = 0.5 + jitter.NextDouble() / 2;
            return TimeSpan.FromMilliseconds(Math.Min(
                maxDelay.TotalMilliseconds,
                baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt, 30)) * factor));
        }

        private TimeSpan? RetryDelay(Exception failure, int attempt)
        {
            TimeSpan backoff = Backoff(options.RetryBaseDelay, options.MaxRetryDelay, attempt);
            ConvokeHttpException http = failure as ConvokeHttpException;
            if (http != null)
            {
                if (http.Status != 429 && http.Status != 503) return null;
                if (http.RetryAfterSeconds == null) return backoff;
                TimeSpan wait = TimeSpan.FromSeconds(http.RetryAfterSeconds.Value);
                return wait > options.MaxRetryDelay ? (TimeSpan?)null : wait;
            }
            return failure is ConvokeNetworkException ? backoff : (TimeSpan?)null;
        }

        /// <summary>Seconds from a Retry-After header (seconds or an HTTP date), or null.</summary>
        public static double? ParseRetryAfter(string header)
        {
            if (string.IsNullOrEmpty(header)) return null;
            double seconds;
            if (double.TryParse(header.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out seconds)) return seconds;
            DateTimeOffset date;
            if (DateTimeOffset.TryParse(header.Trim(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out date))
                return Math.Max(0, (date - DateTimeOffset.UtcNow).TotalSeconds);
            return null;
        }

        /// <summary>The exception of an error status with the common body <c>{"error":{"type","message"}}</c>.</summary>
        internal static ConvokeHttpException HttpError(int status, string bodyText, string retryAfter)
        {
            string type = null;
            string message = null;
            try
            {
                Dictionary<string, object> errorObject = Json.GetObject(Json.Parse(bodyText), "error");
                type = Json.GetString(errorObject, "type");
                message = Json.GetString(errorObject, "message");
            }
            catch (FormatException)
            {
                // Not the common body (a proxy's page, or none): fall back to the status.
            }
            return new ConvokeHttpException(
                status,
                type ?? "http_" + status,
                message ?? "HTTP " + status,
                ParseRetryAfter(retryAfter));
        }

        public void Dispose()
        {
            if (channel != null) channel.Dispose();
            IDisposable disposable = transport as IDisposable;
            if (ownsTransport && disposable != null) disposable.Dispose();
        }

        /// <summary>One turn as the client follows it, across the connections of its reply.</summary>
        private sealed class Turn
        {
            private readonly object gate = new object();
            private string conversationId;
            private bool stopping;

            public Turn(string message, string requestedConversationId, string model)
            {
                Message = message;
                RequestedConversationId = requestedConversationId;
                Model = model;
                Text = new StringBuilder();
            }

            /// <summary>The user's message.</summary>
            public string Message { get; private set; }

            /// <summary>The conversation the message was sent to ("new", an id, or null for a new one).</summary>
            public string RequestedConversationId { get; private set; }

            /// <summary>The model asked for, or null.</summary>
            public string Model { get; private set; }

            /// <summary>Set by the metadata event; read by Stop from any thread.</summary>
            public string ConversationId
            {
                get { lock (gate) return conversationId; }
                set { lock (gate) conversationId = value; }
            }

            /// <summary>Set once Stop was called: every ending is then quiet.</summary>
            public bool Stopping
            {
                get { lock (gate) return stopping; }
                set { lock (gate) stopping = value; }
            }

            // Read and written by the connection being read, one at a time.
            public string TurnId;
            public string LastEventId;
            public long LastSeq;
            public readonly StringBuilder Text;
        }

        /// <summary>Collects a small response (REST calls and error bodies; at most 16 MiB).</summary>
        private sealed class BufferingReceiver : ITransportReceiver
        {
            private readonly List<byte> body = new List<byte>();

            public int Status { get; private set; }
            public string RetryAfter { get; private set; }

            public void OnResponse(int status, string contentType, string retryAfter)
            {
                Status = status;
                RetryAfter = retryAfter;
            }

            public bool OnData(byte[] buffer, int offset, int count)
            {
                if (body.Count + count > 16 * 1024 * 1024) throw new ConvokeProtocolException("The response is too large");
                for (int index = offset; index < offset + count; index++) body.Add(buffer[index]);
                return true;
            }

            public string Text()
            {
                return Encoding.UTF8.GetString(body.ToArray());
            }
        }

        /// <summary>
        /// Turns one connection's events into stream events, whatever carried
        /// them (an SSE response, a request's frames on the socket); one per connection.
        /// </summary>
        private sealed class TurnReader
        {
            private readonly ChatStream stream;
            private readonly Turn turn;
            private readonly bool resuming;
            private bool sawMetadata;
            private bool done;
            private ChatEvent error;
            private ConvokeProtocolException protocolError;

            public TurnReader(ChatStream stream, Turn turn, bool resuming)
            {
                this.stream = stream;
                this.turn = turn;
                this.resuming = resuming;
            }

            /// <summary>Whether this connection delivered its metadata event.</summary>
            public bool SawMetadata { get { return sawMetadata; } }

            /// <summary>Whether nothing more is to be read: the end of the turn's events, or a protocol error.</summary>
            public bool Finished { get { return done || protocolError != null; } }

            public ConvokeProtocolException ProtocolError { get { return protocolError; } }

            public void Fail(ConvokeProtocolException invalid)
            {
                if (protocolError == null) protocolError = invalid;
            }

            /// <summary>One event, with its id ("&lt;turn_id&gt;:&lt;seq&gt;") when it has one.</summary>
            public void OnEvent(ChatEvent chatEvent, string id)
            {
                if (Finished) return;
                if (!sawMetadata && chatEvent.Type != ChatEventType.Metadata)
                {
                    protocolError = new ConvokeProtocolException("The first event is not the metadata event");
                    return;
                }
                if (chatEvent.Type != ChatEventType.Metadata && !IsNew(id)) return;
                switch (chatEvent.Type)
                {
                    case ChatEventType.Metadata:
                        if (sawMetadata) return;
                        sawMetadata = true;
                        if (resuming)
                        {
                            if (chatEvent.Metadata.TurnId != null && chatEvent.Metadata.TurnId != turn.TurnId)
                                protocolError = new ConvokeProtocolException("The resumed stream carries another turn");
                            else
                                stream.OnStateChanged(ChatStreamState.Streaming);
                            return;
                        }
                        turn.ConversationId = chatEvent.Metadata.ConversationId;
                        turn.TurnId = chatEvent.Metadata.TurnId;
                        stream.OnMetadata(chatEvent.Metadata);
                        break;
                    case ChatEventType.Content:
                        turn.Text.Append(chatEvent.Delta);
                        stream.OnDelta(chatEvent.Delta);
                        break;
                    case ChatEventType.Error:
                        error = chatEvent;
                        break;
                    case ChatEventType.Done:
                        done = true;
                        break;
                }
            }

            // Events carry "<turn_id>:<seq>": one at or before the last seen is
            // not delivered twice (the server never resends one; this is a guard).
            private bool IsNew(string id)
            {
                if (id == null || turn.TurnId == null) return true;
                int colon = id.LastIndexOf(':');
                long seq;
                if (colon < 0 || id.Substring(0, colon) != turn.TurnId
                    || !long.TryParse(id.Substring(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out seq))
                    return true;
                if (seq <= turn.LastSeq) return false;
                turn.LastSeq = seq;
                turn.LastEventId = id;
                return true;
            }

            /// <summary>
            /// Null when the reply completed, else why it did not; <paramref name="broken"/>
            /// says how the connection ended when the events stopped short.
            /// </summary>
            public Exception Outcome(string broken, Exception cause)
            {
                if (protocolError != null) return protocolError;
                if (error != null)
                {
                    if (turn.Stopping && error.ErrorType == "cancelled") return null;
                    return new ConvokeStreamException(error.ErrorType, error.ErrorMessage, turn.ConversationId, turn.Text.ToString());
                }
                if (!done)
                    return new ConvokeNetworkException(
                        turn.ConversationId != null ? broken : "The stream ended before its first event",
                        cause,
                        turn.ConversationId);
                return null;
            }
        }

        /// <summary>Turns one SSE response into stream events or an error; one per connection.</summary>
        private sealed class ChatReceiver : ITransportReceiver
        {
            private readonly TurnReader reader;
            private readonly SseParser parser = new SseParser();
            private readonly List<byte> errorBody = new List<byte>();
            private int status;
            private string retryAfter;
            private bool eventStream;

            public ChatReceiver(TurnReader reader)
            {
                this.reader = reader;
                parser.EventParsed += OnEvent;
            }

            /// <summary>The status of the response, once it arrived (0 before).</summary>
            public int Status { get { return status; } }

            /// <summary>Whether this connection delivered its metadata event.</summary>
            public bool SawMetadata { get { return reader.SawMetadata; } }

            public void OnResponse(int status, string contentType, string retryAfter)
            {
                this.status = status;
                this.retryAfter = retryAfter;
                eventStream = contentType != null && contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase);
            }

            public bool OnData(byte[] buffer, int offset, int count)
            {
                if (status < 200 || status > 299 || !eventStream)
                {
                    // Error bodies are small; keep at most 64 KiB of one.
                    if (errorBody.Count < 65536)
                        for (int index = offset; index < offset + count; index++) errorBody.Add(buffer[index]);
                    return true;
                }
                parser.Feed(buffer, offset, count);
                if (reader.ProtocolError != null) throw reader.ProtocolError;
                return !reader.Finished;
            }

            private void OnEvent(SseEvent received)
            {
                if (reader.Finished) return;
                ChatEvent chatEvent;
                try
                {
                    chatEvent = ChatEvent.Decode(received.Data);
                }
                catch (ConvokeProtocolException invalid)
                {
                    reader.Fail(invalid);
                    return;
                }
                reader.OnEvent(chatEvent, received.Id);
            }

            /// <summary>Null when the reply completed, else why it did not.</summary>
            public Exception Outcome()
            {
                if (status < 200 || status > 299)
                    return HttpError(status, Encoding.UTF8.GetString(errorBody.ToArray()), retryAfter);
                if (!eventStream) return new ConvokeProtocolException("Expected an event stream");
                return reader.Outcome("The connection closed before the reply was complete", null);
            }
        }

        /// <summary>
        /// Turns one request's frames on the socket into stream events or an
        /// error: an error frame with a status (before a turn started) is the
        /// ConvokeHttpException of that status, no_turn is HTTP's 204, and the
        /// socket's end before done is a network error (the turn resumes).
        /// </summary>
        private sealed class SocketReceiver : ISocketListener
        {
            private readonly object gate = new object();
            private readonly TurnReader reader;
            private readonly TaskCompletionSource<bool> finished =
                new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            private ConvokeHttpException refused;
            private Exception closed;
            private bool noTurn;

            public SocketReceiver(TurnReader reader)
            {
                this.reader = reader;
            }

            /// <summary>Completes when the request's frames have ended, or the socket did.</summary>
            public Task Finished { get { return finished.Task; } }

            public bool SawMetadata { get { lock (gate) return reader.SawMetadata; } }

            public bool NoTurn { get { lock (gate) return noTurn; } }

            public void OnFrame(Dictionary<string, object> frame)
            {
                lock (gate)
                {
                    if (finished.Task.IsCompleted) return;
                    string type = Json.GetString(frame, "type");
                    if (type == "error" && frame.ContainsKey("status"))
                        refused = SocketError(frame);
                    else if (type == "no_turn")
                        noTurn = true;
                    else
                    {
                        try
                        {
                            reader.OnEvent(ChatEvent.FromJson(frame, true), Json.GetString(frame, "event_id"));
                        }
                        catch (ConvokeProtocolException invalid)
                        {
                            reader.Fail(invalid);
                        }
                        if (!reader.Finished) return;
                    }
                }
                finished.TrySetResult(true);
            }

            public void OnClosed(Exception reason)
            {
                lock (gate)
                {
                    if (finished.Task.IsCompleted) return;
                    closed = reason;
                }
                finished.TrySetResult(true);
            }

            /// <summary>Null when the reply completed (or there was nothing to replay), else why it did not.</summary>
            public Exception Outcome()
            {
                lock (gate)
                {
                    if (refused != null) return refused;
                    if (noTurn) return null;
                    if (closed != null && !(closed is ConvokeNetworkException) && !reader.Finished) return closed;
                    return reader.Outcome(
                        "The WebSocket closed before the reply was complete",
                        closed != null ? closed.InnerException ?? closed : null);
                }
            }
        }
    }
}
