// End-to-end tests of the WebSocket transport (UseWebSocket) against the
// reference server, part of the program in ConvokeClientTests.cs. The sockets
// are real ClientWebSockets, counted and watched through a recording factory;
// a socket is dropped by a cut proxy in front of the server (--proxies URL),
// as a network would drop it. The tests wait on the client's events, the
// proxy and the server, never on the clock.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using static Convoke.Tests.TestSupport;

namespace Convoke.Tests
{
    public static partial class ConvokeClientTests
    {
        // ---- helpers ----

        /// <summary>A ClientWebSocketConnection that records what it sent, received and connected to.</summary>
        private sealed class RecordedSocket : IWebSocketConnection
        {
            private readonly ClientWebSocketConnection inner = new ClientWebSocketConnection();
            private readonly SocketRecorder recorder;
            public readonly List<string> Sent = new List<string>();
            public readonly List<string> Received = new List<string>();
            public Uri Uri;
            public IDictionary<string, string> Headers;

            public RecordedSocket(SocketRecorder recorder)
            {
                this.recorder = recorder;
            }

            public bool CanSetHeaders { get { return recorder.CanSetHeaders; } }

            public async Task ConnectAsync(Uri uri, IDictionary<string, string> headers, CancellationToken cancellationToken)
            {
                Uri = uri;
                Headers = headers;
                TaskCompletionSource<bool> gate = recorder.TakeGate();
                if (gate != null)
                {
                    recorder.GateReached.TrySetResult(true);
                    await gate.Task;
                }
                // Without headers, as a browser's WebSocket would connect.
                await inner.ConnectAsync(uri, recorder.CanSetHeaders ? headers : null, cancellationToken);
            }

            public Task SendAsync(string text, CancellationToken cancellationToken)
            {
                lock (Sent) Sent.Add(text);
                return inner.SendAsync(text, cancellationToken);
            }

            public async Task<string> ReceiveAsync(CancellationToken cancellationToken)
            {
                string text = await inner.ReceiveAsync(cancellationToken);
                if (text != null) lock (Received) Received.Add(text);
                return text;
            }

            public Task CloseAsync()
            {
                return inner.CloseAsync();
            }

            public void Dispose()
            {
                inner.Dispose();
            }
        }

        /// <summary>The sockets a client made, in order; can hold the next connect until released.</summary>
        private sealed class SocketRecorder
        {
            public readonly List<RecordedSocket> Sockets = new List<RecordedSocket>();
            public bool CanSetHeaders = true;
            private TaskCompletionSource<bool> nextGate;
            public readonly TaskCompletionSource<bool> GateReached = new TaskCompletionSource<bool>();

            public IWebSocketConnection Make()
            {
                RecordedSocket socket = new RecordedSocket(this);
                lock (Sockets) Sockets.Add(socket);
                return socket;
            }

            /// <summary>Holds the next socket's connect until the returned source is set.</summary>
            public TaskCompletionSource<bool> HoldNextConnect()
            {
                lock (Sockets) nextGate = new TaskCompletionSource<bool>();
                return nextGate;
            }

            public TaskCompletionSource<bool> TakeGate()
            {
                lock (Sockets)
                {
                    TaskCompletionSource<bool> gate = nextGate;
                    nextGate = null;
                    return gate;
                }
            }

            public int Count { get { lock (Sockets) return Sockets.Count; } }

            /// <summary>Every frame the client sent, on every socket, parsed.</summary>
            public List<Dictionary<string, object>> SentFrames()
            {
                lock (Sockets)
                    return Sockets.SelectMany(socket => { lock (socket.Sent) return socket.Sent.ToList(); })
                        .Select(text => (Dictionary<string, object>)Json.Parse(text))
                        .ToList();
            }
        }

        private static ConvokeClient SocketClient(
            string url,
            SocketRecorder recorder = null,
            string apiKey = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz",
            IConversationIdStore store = null)
        {
            return new ConvokeClient(new ConvokeClientOptions
            {
                BaseUrl = url,
                ApiKey = apiKey,
                UseWebSocket = true,
                WebSocketFactory = recorder == null ? (Func<IWebSocketConnection>)null : recorder.Make,
                MaxRetries = 0,
                RetryBaseDelay = TimeSpan.FromMilliseconds(1),
                MaxRetryDelay = TimeSpan.FromMilliseconds(100),
                ResumeAttempts = 10,
                ResumeBaseDelay = TimeSpan.FromMilliseconds(5),
                MaxResumeDelay = TimeSpan.FromMilliseconds(50),
                ConversationIdStore = store
            });
        }

        // ---- streams ----

        private static void SocketIdFirst()
        {
            SocketRecorder recorder = new SocketRecorder();
            using (ConvokeClient client = SocketClient(referenceUrl, recorder))
            {
                ChatStream stream = client.Chat("hello over a socket");
                string conversationId = ExpectIdFirst(stream, "Echo #1: hello over a socket");
                Equal(ChatStreamState.Completed, stream.State, "state");
                // The next turn continues the conversation on the same socket.
                Equal("Echo #2: again", Await(client.Chat("again", conversationId).Text, "second text"), "history kept");
                Equal(1, recorder.Count, "one socket for both turns");
                RecordedSocket socket = recorder.Sockets[0];
                Equal(ConvokeClient.SocketPath, socket.Uri.AbsolutePath, "socket path");
                Equal("ws", socket.Uri.Scheme, "scheme");
                Equal("Bearer alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz", socket.Headers["Authorization"], "credentials as a header");
                Equal(ConvokeClient.ClientHeaderValue, socket.Headers[ConvokeClient.ClientHeader], "client header");
                Dictionary<string, object> first = recorder.SentFrames()[0];
                Equal("chat.send", Json.GetString(first, "type"), "first frame type");
                Equal("hello over a socket", Json.GetString(first, "message"), "message");
                True(!first.ContainsKey("conversation_id"), "no conversation id on a new conversation");
            }
        }

        private static void SocketMultiplexed()
        {
            SocketRecorder recorder = new SocketRecorder();
            using (ConvokeClient client = SocketClient(referenceUrl, recorder))
            {
                // Started together; their frames interleave on the one socket.
                ChatStream[] streams = Enumerable.Range(0, 4).Select(index => client.Chat(Words("m" + index + "-", 20), "new")).ToArray();
                for (int index = 0; index < streams.Length; index++)
                {
                    Equal("Echo #1: " + Words("m" + index + "-", 20), Await(streams[index].Text, "text " + index), "reply " + index);
                }
                Equal(4, streams.Select(stream => stream.ConversationId.Result).Distinct().Count(), "four conversations");
                Equal(1, recorder.Count, "one socket");
                List<string> requestIds = recorder.SentFrames().Select(frame => Json.GetString(frame, "request_id")).ToList();
                Equal(4, requestIds.Distinct().Count(), "a request id per turn");
                // The socket's received frames really interleaved: some turn's frame came between another's first and last.
                List<string> received;
                lock (recorder.Sockets[0].Received) received = recorder.Sockets[0].Received.ToList();
                List<string> order = received.Select(text => Json.GetString(Json.Parse(text), "request_id")).ToList();
                int firstEnd = order.LastIndexOf(requestIds[0]);
                True(order.Take(firstEnd).Any(id => id != requestIds[0]), "the turns' frames interleaved");
            }
        }

        private static void SocketPreStartError()
        {
            ConvokeHttpException overHttp;
            using (ConvokeClient client = Client(referenceUrl))
                overHttp = Failure(client.Chat("").Text) as ConvokeHttpException;
            using (ConvokeClient client = SocketClient(referenceUrl))
            {
                ChatStream stream = client.Chat("");
                ConvokeHttpException error = Failure(stream.ConversationId) as ConvokeHttpException;
                True(error != null, "a ConvokeHttpException");
                Equal(400, error.Status, "status");
                Equal("invalid_request", error.Type, "type");
                Equal(overHttp.Status, error.Status, "the status HTTP raises");
                Equal(overHttp.Type, error.Type, "the type HTTP raises");
                True(Failure(stream.Text) == error, "text fails with the same exception");
                Equal(ChatStreamState.Failed, stream.State, "state");
                // The socket stays open: the next turn works.
                Equal("Echo #1: fine", Await(client.Chat("fine").Text, "next text"), "next reply");
            }
        }

        private static void SocketCancel()
        {
            SocketRecorder recorder = new SocketRecorder();
            using (ConvokeClient client = SocketClient(referenceUrl, recorder))
            {
                ChatStream stream = client.Chat(Words("k", 400));
                int received = 0;
                stream.DeltaReceived += delta =>
                {
                    if (Interlocked.Increment(ref received) == 3) stream.Cancel();
                };
                Exception error = Failure(stream.Text);
                True(error is TaskCanceledException, "text cancelled, got " + error.GetType().Name);
                Equal(ChatStreamState.Cancelled, stream.State, "state");
                True(stream.PartialText.Length < ("Echo #1: " + Words("k", 400)).Length, "the reply was cut short");
                Equal("Echo #1: still here", Await(client.Chat("still here").Text, "next text"), "the socket carries on");
                Equal(1, recorder.Count, "one socket");
                // The socket stayed open, so the server was not disconnected: the turn ran to its end.
                string conversationId = Await(stream.ConversationId, "id");
                WaitForTurnEnd(conversationId);
                ConversationMessage reply = Await(client.Conversations.FetchAsync(conversationId), "stored").Messages.Last();
                Equal(MessageStatus.Complete, reply.Status, "stored status");
                Equal("Echo #1: " + Words("k", 400), reply.Content, "stored reply");
            }
        }

        // ---- stop ----

        private static void SocketStop()
        {
            SocketRecorder recorder = new SocketRecorder();
            using (ConvokeClient client = SocketClient(referenceUrl, recorder))
            {
                // Far too long to finish before the stop (4000 words at 5 ms each).
                ChatStream stream = client.Chat(Words("w", 4000));
                Watch watch = new Watch(stream);
                watch.WaitForDeltas(3);
                string conversationId = Await(stream.ConversationId, "id");
                Await(stream.Stop().ContinueWith(task => { if (task.IsFaulted) throw task.Exception; return true; }), "stop");
                string text = Await(stream.Text, "text after stop");
                Equal(ChatStreamState.Stopped, stream.State, "state");
                Equal(watch.Deltas.ToString(), text, "the text is what arrived");
                True(watch.Failure == null, "Failed was not raised");
                Dictionary<string, object> stop = recorder.SentFrames().Single(frame => Json.GetString(frame, "type") == "chat.stop");
                Equal(conversationId, Json.GetString(stop, "conversation_id"), "chat.stop names the conversation");
                string answer;
                lock (recorder.Sockets[0].Received)
                    answer = recorder.Sockets[0].Received.Single(frame => Json.GetString(Json.Parse(frame), "request_id") == Json.GetString(stop, "request_id"));
                Equal("stopped", Json.GetString(Json.Parse(answer), "type"), "the server answered stopped");
                True(Json.GetString(Json.Parse(answer), "turn_id") != null, "a turn was running");
                WaitForTurnEnd(conversationId);
                Conversation stored = Await(client.Conversations.GetAsync(conversationId), "stored");
                ConversationMessage reply = stored.Messages.Last();
                Equal(MessageStatus.Cancelled, reply.Status, "stored status");
                True(reply.Content.StartsWith(text, StringComparison.Ordinal), "the stored reply begins with the text shown");
                Equal("Echo #2: next", Await(client.Chat("next", conversationId).Text, "next text"), "the socket carries on");
                Equal(1, recorder.Count, "one socket");
            }
        }

        // ---- resume ----

        private static void SocketResumeAfterDrop()
        {
            // The socket is dropped by the network mid-reply; the stream resumes
            // with chat.resume and the last event id on a new socket.
            SocketRecorder recorder = new SocketRecorder();
            using (Proxy proxy = new Proxy())
            using (ConvokeClient client = SocketClient(proxy.Url, recorder))
            {
                string message = Words("r", 200);
                ChatStream stream = client.Chat(message);
                Watch watch = new Watch(stream);
                watch.WaitForDeltas(3);
                proxy.Cut();
                proxy.Heal();
                string expected = "Echo #1: " + message;
                Equal(expected, Await(stream.Text, "text"), "reply");
                Equal(expected, watch.Deltas.ToString(), "every delta once, in order");
                True(watch.States.Contains(ChatStreamState.Reconnecting), "Reconnecting was raised");
                Equal(ChatStreamState.Completed, stream.State, "state");
                True(watch.Failure == null, "Failed was not raised");
                True(recorder.Count >= 2, "a new socket (" + recorder.Count + ")");
                string turnId = Await(stream.Metadata, "metadata").TurnId;
                Dictionary<string, object> resume = recorder.SentFrames().First(frame => Json.GetString(frame, "type") == "chat.resume");
                Equal(Await(stream.ConversationId, "id"), Json.GetString(resume, "conversation_id"), "resume names the conversation");
                // The first socket's last event id is what the resume asks to follow.
                string lastEventId;
                lock (recorder.Sockets[0].Received)
                    lastEventId = recorder.Sockets[0].Received.Select(frame => Json.GetString(Json.Parse(frame), "event_id")).Last(id => id != null);
                True(lastEventId.StartsWith(turnId + ":", StringComparison.Ordinal), "event ids name the turn");
                Equal(lastEventId, Json.GetString(resume, "last_event_id"), "last_event_id");
                using (ConvokeClient direct = TurnClient(referenceUrl))
                {
                    ConversationMessage reply = Await(direct.Conversations.FetchAsync(stream.ConversationId.Result), "stored").Messages.Last();
                    Equal(MessageStatus.Complete, reply.Status, "stored status");
                    Equal(expected, reply.Content, "stored reply");
                }
            }
        }

        private static void SocketResumeNoTurn()
        {
            // The socket drops and the client is held before its new socket
            // opens. Meanwhile the turn ends and another device continues the
            // conversation: the resume gets no_turn, like HTTP's 204, and the
            // rest of the reply comes from the store.
            SocketRecorder recorder = new SocketRecorder();
            using (Proxy proxy = new Proxy())
            using (ConvokeClient client = SocketClient(proxy.Url, recorder))
            using (ConvokeClient other = TurnClient(referenceUrl))
            {
                string message = Words("n", 30);
                ChatStream stream = client.Chat(message);
                Watch watch = new Watch(stream);
                watch.WaitForDeltas(3);
                TaskCompletionSource<bool> gate = recorder.HoldNextConnect();
                proxy.Cut();
                proxy.Heal();
                Await(recorder.GateReached.Task, "a new socket");
                string conversationId = Await(stream.ConversationId, "id");
                WaitForTurnEnd(conversationId);
                Equal("Echo #2: later", Await(other.Chat("later", conversationId).Text, "the other device's reply"), "other reply");
                gate.SetResult(true);
                string expected = "Echo #1: " + message;
                Equal(expected, Await(stream.Text, "text"), "the reply, from the store");
                Equal(expected, watch.Deltas.ToString(), "every piece once");
                Equal(ChatStreamState.Completed, stream.State, "state");
                string answer;
                lock (recorder.Sockets[1].Received) answer = recorder.Sockets[1].Received.First();
                Equal("no_turn", Json.GetString(Json.Parse(answer), "type"), "the server answered no_turn");
            }
        }

        private static void SocketContext()
        {
            using (LoopContext context = new LoopContext())
            using (Proxy proxy = new Proxy())
            {
                ThreadCheckingStore store = new ThreadCheckingStore { Expected = context.Thread };
                using (ConvokeClient client = SocketClient(proxy.Url, null, null, store))
                {
                    int offThread = 0;
                    List<ChatStreamState> states = new List<ChatStreamState>();
                    Action check = () => { if (Thread.CurrentThread != context.Thread) Interlocked.Increment(ref offThread); };
                    string message = Words("t", 200);
                    ChatStream stream = context.Run(() =>
                    {
                        ChatStream started = client.Chat(message);
                        started.StateChanged += state => { check(); states.Add(state); };
                        started.MetadataReceived += metadata => check();
                        started.DeltaReceived += delta => check();
                        started.Completed += text => check();
                        return started;
                    });
                    Watch watch = new Watch(stream);
                    watch.WaitForDeltas(3);
                    proxy.Cut();
                    proxy.Heal();
                    Equal("Echo #1: " + message, Await(stream.Text, "text"), "reply");
                    Equal(0, offThread, "handlers called off the context's thread");
                    True(states.Contains(ChatStreamState.Reconnecting), "Reconnecting was raised");
                    Equal(ChatStreamState.Completed, states.Last(), "last state");
                    True(store.Calls >= 2, "the store was read and written");
                    Equal(0, store.OffThread, "store calls off the context's thread");
                }
            }
        }

        // ---- credentials ----

        private static void SocketTicket()
        {
            // A connection that cannot set headers (a browser's WebSocket in
            // WebGL) gets a ticket over HTTP and opens the socket with ?ticket=.
            SocketRecorder recorder = new SocketRecorder { CanSetHeaders = false };
            using (ConvokeClient client = SocketClient(keyedUrl, recorder))
            {
                Equal("Echo #1: by ticket", Await(client.Chat("by ticket").Text, "text"), "reply");
                RecordedSocket socket = recorder.Sockets[0];
                True(socket.Uri.Query.StartsWith("?ticket=", StringComparison.Ordinal), "the ticket is in the URL: " + socket.Uri);
                True(!socket.Headers.ContainsKey("Authorization"), "no credentials in headers");
            }
        }

        private static void SocketCredentials()
        {
            // The server with API keys: the key in the upgrade's header lets the socket open ...
            using (ConvokeClient client = SocketClient(keyedUrl))
                Equal("Echo #1: keyed", Await(client.Chat("keyed").Text, "text"), "reply with the right key");
            // ... and a wrong or missing one is refused as HTTP refuses it: 401 unauthenticated.
            foreach (string key in new[] { "wrong-key-0123456789abcdef-ghijklmnopqrstuvwxyz", null })
            {
                ConvokeHttpException overHttp;
                using (ConvokeClient client = new ConvokeClient(new ConvokeClientOptions { BaseUrl = keyedUrl, ApiKey = key, MaxRetries = 0 }))
                    overHttp = Failure(client.Chat("no").Text) as ConvokeHttpException;
                using (ConvokeClient client = SocketClient(keyedUrl, null, key))
                {
                    ConvokeHttpException error = Failure(client.Chat("no").Text) as ConvokeHttpException;
                    True(error != null, "a ConvokeHttpException (key " + (key == null ? "missing" : "wrong") + ")");
                    Equal(401, error.Status, "status");
                    Equal("unauthenticated", error.Type, "type");
                    Equal(overHttp.Status, error.Status, "the status HTTP raises");
                    Equal(overHttp.Type, error.Type, "the type HTTP raises");
                }
            }
        }
    }
}
