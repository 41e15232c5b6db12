// A complete MonoBehaviour: press Play with a Convoke server running (`npm start`
// in the Convoke repository serves http://127.0.0.1:3000). It logs the
// conversation id the moment the first event arrives, the reply as it
// streams, and continues the same conversation on the next message.
using System;
using System.Threading;
using Convoke;
using UnityEngine;

public sealed class BasicChatSample : MonoBehaviour
{
    [SerializeField] private string serverUrl = "http://127.0.0.1:3000";
    [SerializeField] private string apiKey = "";
    [SerializeField] private string message = "Hello from Unity";
    [SerializeField] private bool useUnityWebRequest = false;

    private ConvokeClient client;
    private CancellationTokenSource cancellation;
    private string conversationId;

    private async void Start()
    {
        client = new ConvokeClient(new ConvokeClientOptions
        {
            BaseUrl = serverUrl,
            ApiKey = string.IsNullOrEmpty(apiKey) ? null : apiKey,
            // The HttpClient transport is the default; UnityWebRequest is the choice on WebGL.
            Transport = useUnityWebRequest ? new UnityWebRequestTransport() : null
        });
        cancellation = new CancellationTokenSource();

        float sentAt = Time.realtimeSinceStartup;
        ChatStream reply = client.Chat(message, conversationId, null, cancellation.Token);
        // Handlers run on the main thread: it is safe to touch scene objects here.
        reply.ConversationIdReceived += id =>
            Debug.Log("Conversation " + id + " after " + Mathf.RoundToInt((Time.realtimeSinceStartup - sentAt) * 1000) + " ms");
        reply.DeltaReceived += delta => Debug.Log("delta: " + delta);

        try
        {
            conversationId = await reply.ConversationId; // resume with it next time
            string text = await reply.Text;
            Debug.Log("Reply: " + text);
        }
        catch (OperationCanceledException)
        {
            Debug.Log("Stopped; the server keeps the partial reply: " + reply.PartialText);
        }
        catch (ConvokeStreamException error)
        {
            Debug.LogWarning("The reply failed mid-stream (" + error.Type + "): " + error.Message);
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

    private void OnDestroy()
    {
        if (cancellation != null) cancellation.Cancel();
        if (client != null) client.Dispose();
    }
}
