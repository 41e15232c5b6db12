// A complete MonoBehaviour: list → open → continue. Press Play with a Convoke
// server running (`npm start` in the Convoke repository serves
// http://127.0.0.1:3000). It lists your conversations, opens the one this
// device was last in (remembered in PlayerPrefs, so it survives a restart) or
// else the newest, logs its messages, and continues it with `message`. Hook
// StopReply, RenameConversation and DeleteConversation to UI buttons.
using System;
using System.Threading.Tasks;
using Convoke;
using UnityEngine;

public sealed class ConversationsSample : MonoBehaviour
{
    [SerializeField] private string serverUrl = "http://127.0.0.1:3000";
    [SerializeField] private string apiKey = "";
    [SerializeField] private string message = "Where were we?";

    private ConvokeClient client;
    private ChatStream reply;
    private string conversationId;

    private async void Start()
    {
        client = new ConvokeClient(new ConvokeClientOptions
        {
            BaseUrl = serverUrl,
            ApiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey,
            // Chat() without an id continues the conversation stored here, and stores each new id.
            ConversationIdStore = new PlayerPrefsConversationIdStore(),
            // A broken connection mid-reply reconnects this many times (0 turns it off).
            ResumeAttempts = 5
        });
        try
        {
            await ListConversations();
            await OpenConversation();
            Continue(message);
        }
        catch (ConvokeHttpException error)
        {
            Debug.LogError("HTTP " + error.Status + " " + error.Type + ": " + error.Message);
        }
        catch (ConvokeException error)
        {
            Debug.LogError(error.Message);
        }
    }

    // 1. List: pages of 20, newest first, until NextCursor is null.
    private async Task ListConversations()
    {
        string cursor = null;
        do
        {
            ConversationPage page = await client.Conversations.ListAsync(20, cursor);
            foreach (ConversationSummary summary in page.Items)
                Debug.Log(summary.UpdatedAt.ToLocalTime() + "  " + summary.Title + "  (" + summary.Id + ")");
            cursor = page.NextCursor;
        } while (cursor != null);
    }

    // 2. Open: the remembered conversation, else the newest; null starts a new one.
    private async Task OpenConversation()
    {
        conversationId = client.CurrentConversationId();
        if (conversationId == null)
        {
            ConversationPage newest = await client.Conversations.ListAsync(1);
            if (newest.Items.Count > 0) conversationId = newest.Items[0].Id;
        }
        if (conversationId == null)
        {
            Debug.Log("No conversation yet: the first message starts one.");
            return;
        }
        Conversation conversation;
        try
        {
            conversation = await client.Conversations.GetAsync(conversationId);
        }
        catch (ConvokeHttpException error)
        {
            if (error.Status != 404) throw;
            // Deleted elsewhere: start afresh.
            client.ForgetConversation();
            conversationId = null;
            return;
        }
        Debug.Log("Opened \"" + conversation.Title + "\"");
        foreach (ConversationMessage stored in conversation.Messages)
        {
            // Replies that did not finish say so: cancelled, interrupted, error, or streaming while a turn runs.
            string status = stored.Status == MessageStatus.Complete ? "" : " [" + stored.Status + "]";
            Debug.Log(stored.Role + ": " + stored.Content + status);
        }
        if (conversation.RunningTurn != null)
            Debug.Log("A reply is still being written (turn " + conversation.RunningTurn.TurnId + ")");
    }

    // 3. Continue: stream the reply; events arrive on the main thread.
    private async void Continue(string text)
    {
        reply = client.Chat(text, conversationId);
        reply.ConversationIdReceived += id => conversationId = id;
        reply.DeltaReceived += delta => Debug.Log("delta: " + delta);
        reply.StateChanged += state =>
        {
            if (state == ChatStreamState.Reconnecting) Debug.LogWarning("Connection lost, reconnecting…");
        };
        try
        {
            string whole = await reply.Text;
            Debug.Log(reply.State == ChatStreamState.Stopped ? "Stopped: " + whole : "Reply: " + whole);
        }
        catch (OperationCanceledException)
        {
            Debug.Log("Disconnected; the server keeps the reply going for a short while: " + reply.PartialText);
        }
        catch (ConvokeStreamException error)
        {
            Debug.LogWarning("The reply ended early (" + error.Type + "): " + error.PartialText);
        }
        catch (ConvokeException error)
        {
            Debug.LogError(error.Message);
        }
    }

    /// <summary>Stops the reply on the server; the stream completes with the text so far.</summary>
    public async void StopReply()
    {
        if (reply == null) return;
        try
        {
            await reply.Stop();
        }
        catch (ConvokeException error)
        {
            Debug.LogWarning("The server could not be told to stop: " + error.Message);
        }
    }

    public async void RenameConversation(string title)
    {
        if (conversationId == null) return;
        ConversationSummary renamed = await client.Conversations.RenameAsync(conversationId, title);
        Debug.Log("Renamed to \"" + renamed.Title + "\"");
    }

    public async void DeleteConversation()
    {
        if (conversationId == null) return;
        await client.Conversations.DeleteAsync(conversationId);
        client.ForgetConversation();
        conversationId = null;
    }

    private void OnDestroy()
    {
        if (reply != null) reply.Cancel();
        if (client != null) client.Dispose();
    }
}
