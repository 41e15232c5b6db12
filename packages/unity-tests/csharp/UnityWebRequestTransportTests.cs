// Tests of UnityWebRequestTransport without Unity: its relay driven by hand,
// then the transport itself, compiled with UNITY_5_3_OR_NEWER against the
// UnityEngine stub (../stubs), streaming real bytes from the reference server
// and the faulty server. Scene code runs on the stub's main thread, as in a
// MonoBehaviour; the test thread only waits. Runs with the runner and the
// assertions of packages/unity/Tests/TestSupport.cs, compiled in: prints
// PASS/FAIL per test and "N passed, N failed, N skipped"; exits non-zero on
// any failure.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net.Http;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using UnityEngine.Networking;
using UnityStub;
using static Convoke.Tests.TestSupport;

namespace Convoke.Tests
{
    public static class UnityWebRequestTransportTests
    {
        private const string ApiKey = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz";
        private static string referenceUrl;
        private static string faultyUrl;

        private static readonly List<KeyValuePair<string, Action>> Tests = new List<KeyValuePair<string, Action>>
        {
            Test("relay: OnResponse comes once, before the first piece, with status, content type and Retry-After", RelayResponseFirst),
            Test("relay: a response without a body reports its status when it ends", RelayEmptyBody),
            Test("relay: a receiver that stops ends the download and completes the task", RelayReceiverStops),
            Test("relay: a receiver's exception stops the download and fails the task with it", RelayReceiverThrows),
            Test("relay: a connection error is an IOException, cancellation cancels, the request is released first", RelayEnds),
            Test("stub: UnityWebRequest refuses to be used off the main thread", StubMainThreadOnly),
            Test("transport: a token cancelled before sending cancels at once", TransportCancelledBeforeSend),
            Test("e2e: a chat through ConvokeClient delivers the id before the first delta, then the full reply", EndToEndIdFirst),
            Test("e2e: the download handler gets a streamed reply in several pieces, the id before the last", EndToEndPieces),
            Test("e2e: GET, PATCH and DELETE reach the conversation API; a 204 has a status and no body", EndToEndMethods),
            Test("e2e: an error status is a ConvokeHttpException with the common body", EndToEndHttpError),
            Test("e2e: an error event is a ConvokeStreamException after the id", EndToEndStreamError),
            Test("e2e: 503, 429 and a dropped connection are retried before the first event", EndToEndRetries),
            Test("e2e: cancelling mid-stream aborts the request; the server sees the client go", EndToEndCancel),
            Test("e2e: an unreachable server is an IOException, and a ConvokeNetworkException for the client", EndToEndUnreachable),
        };

        public static int Main(string[] args)
        {
            referenceUrl = Option(args, "--reference");
            faultyUrl = Option(args, "--faulty");
            List<KeyValuePair<string, Action>> tests = Tests.Select(test => Test(test.Key, FailingOnMainThreadErrors(test.Value))).ToList();
            return Run(tests, args, referenceUrl != null && faultyUrl != null, "pass --reference URL --faulty URL");
        }

        /// <summary>
        /// The test, then the exceptions thrown on the stub's main thread meanwhile: Unity would log
        /// these and carry on; here they fail the test that caused them.
        /// </summary>
        private static Action FailingOnMainThreadErrors(Action body)
        {
            return () =>
            {
                List<Exception> escaped;
                try
                {
                    body();
                }
                finally
                {
                    escaped = MainThread.TakeErrors();
                }
                if (escaped.Count > 0) throw new Exception("on the main thread: " + escaped[0]);
            };
        }

        /// <summary>Records what a transport hands over, from whichever thread.</summary>
        private sealed class RecordingReceiver : ITransportReceiver
        {
            private readonly object gate = new object();
            private readonly MemoryStream body = new MemoryStream();
            private readonly List<string> calls = new List<string>();
            private readonly Func<int, bool> onPiece;
            private int pieces;

            public RecordingReceiver(Func<int, bool> onPiece = null)
            {
                this.onPiece = onPiece;
            }

            public int Status { get; private set; }
            public string ContentType { get; private set; }
            public string RetryAfter { get; private set; }
            public bool OffMainThread { get; private set; }

            public List<string> Calls { get { lock (gate) return new List<string>(calls); } }
            public int Pieces { get { lock (gate) return pieces; } }
            public string Body { get { lock (gate) return Encoding.UTF8.GetString(body.ToArray()); } }

            public void OnResponse(int status, string contentType, string retryAfter)
            {
                lock (gate)
                {
                    Status = status;
                    ContentType = contentType;
                    RetryAfter = retryAfter;
                    calls.Add("response " + status);
                    if (!MainThread.IsCurrent) OffMainThread = true;
                }
            }

            public bool OnData(byte[] buffer, int offset, int count)
            {
                int index;
                lock (gate)
                {
                    body.Write(buffer, offset, count);
                    calls.Add("data " + count);
                    index = pieces++;
                    if (!MainThread.IsCurrent) OffMainThread = true;
                }
                // onPiece gets the piece's index (0 for the first) and says whether to go on.
                return onPiece == null || onPiece(index);
            }
        }

        /// <summary>A transport that counts what the inner transport hands the client's receiver.</summary>
        private sealed class CountingTransport : IChatTransport
        {
            private readonly IChatTransport inner;
            private readonly List<Task> sends = new List<Task>();
            private int pieces;
            private int responses;
            private bool dataBeforeResponse;

            public CountingTransport(IChatTransport inner)
            {
                this.inner = inner;
            }

            public int Pieces { get { return Volatile.Read(ref pieces); } }
            public int Responses { get { return Volatile.Read(ref responses); } }
            public bool DataBeforeResponse { get { return Volatile.Read(ref dataBeforeResponse); } }
            public List<Task> Sends { get { lock (sends) return new List<Task>(sends); } }

            public Task SendAsync(TransportRequest request, ITransportReceiver receiver, CancellationToken cancellationToken)
            {
                Task sent = inner.SendAsync(request, new Counter(this, receiver), cancellationToken);
                lock (sends) sends.Add(sent);
                return sent;
            }

            private sealed class Counter : ITransportReceiver
            {
                private readonly CountingTransport owner;
                private readonly ITransportReceiver receiver;
                private bool responded;

                public Counter(CountingTransport owner, ITransportReceiver receiver)
                {
                    this.owner = owner;
                    this.receiver = receiver;
                }

                public void OnResponse(int status, string contentType, string retryAfter)
                {
                    responded = true;
                    Interlocked.Increment(ref owner.responses);
                    receiver.OnResponse(status, contentType, retryAfter);
                }

                public bool OnData(byte[] buffer, int offset, int count)
                {
                    if (!responded) Volatile.Write(ref owner.dataBeforeResponse, true);
                    Interlocked.Increment(ref owner.pieces);
                    return receiver.OnData(buffer, offset, count);
                }
            }
        }

        private static DownloadRelay Relay(ITransportReceiver receiver, CancellationToken token, int status = 200)
        {
            Dictionary<string, string> headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
            {
                { "content-type", "text/event-stream" },
                { "retry-after", "3" }
            };
            return new DownloadRelay(
                receiver,
                () => status,
                name =>
                {
                    string value;
                    return headers.TryGetValue(name, out value) ? value : null;
                },
                token);
        }

        // ---- the relay, driven by hand ----

        private static void RelayResponseFirst()
        {
            RecordingReceiver receiver = new RecordingReceiver();
            DownloadRelay relay = Relay(receiver, CancellationToken.None, 503);
            byte[] buffer = Encoding.UTF8.GetBytes("abcdefgh");
            True(relay.Receive(buffer, 3), "first piece accepted");
            True(relay.Receive(null, 0), "an empty call is ignored");
            True(relay.Receive(buffer, 0), "a zero-length call is ignored");
            True(relay.Receive(buffer, 8), "second piece accepted");
            bool released = false;
            relay.Finish(false, null, () => released = true);
            Await(relay.Task, "task");
            True(released, "released");
            Equal("response 503|data 3|data 8", string.Join("|", receiver.Calls.ToArray()), "calls");
            Equal("text/event-stream", receiver.ContentType, "content type");
            Equal("3", receiver.RetryAfter, "Retry-After");
            Equal("abcabcdefgh", receiver.Body, "only dataLength bytes of each piece");
        }

        private static void RelayEmptyBody()
        {
            RecordingReceiver receiver = new RecordingReceiver();
            DownloadRelay relay = Relay(receiver, CancellationToken.None, 204);
            relay.Finish(false, null, () => { });
            Await(relay.Task, "task");
            Equal("response 204", string.Join("|", receiver.Calls.ToArray()), "calls");
        }

        private static void RelayReceiverStops()
        {
            RecordingReceiver receiver = new RecordingReceiver(piece => piece < 1);
            DownloadRelay relay = Relay(receiver, CancellationToken.None);
            byte[] buffer = new byte[4];
            True(relay.Receive(buffer, 4), "first piece continues");
            True(!relay.Receive(buffer, 4), "second piece stops the download");
            True(!relay.Receive(buffer, 4), "nothing after the stop");
            // Returning false aborts the request, so it ends without a whole response.
            relay.Finish(true, "Data Processing Error", () => { });
            Await(relay.Task, "a stopped download completes");
            Equal(2, receiver.Pieces, "pieces handed over");
        }

        private static void RelayReceiverThrows()
        {
            ConvokeProtocolException thrown = new ConvokeProtocolException("bad event");
            int calls = 0;
            DownloadRelay relay = new DownloadRelay(
                new ThrowingReceiver(thrown, () => calls++),
                () => 200,
                name => "text/event-stream",
                CancellationToken.None);
            True(!relay.Receive(new byte[1], 1), "a throwing receiver stops the download");
            True(!relay.Receive(new byte[1], 1), "and is not called again");
            relay.Finish(true, "Data Processing Error", () => { });
            True(Failure(relay.Task) == thrown, "the task fails with the receiver's exception");
            Equal(1, calls, "OnData calls");
        }

        private sealed class ThrowingReceiver : ITransportReceiver
        {
            private readonly Exception error;
            private readonly Action called;

            public ThrowingReceiver(Exception error, Action called)
            {
                this.error = error;
                this.called = called;
            }

            public void OnResponse(int status, string contentType, string retryAfter) { }

            public bool OnData(byte[] buffer, int offset, int count)
            {
                called();
                throw error;
            }
        }

        private static void RelayEnds()
        {
            RecordingReceiver broken = new RecordingReceiver();
            DownloadRelay brokenRelay = Relay(broken, CancellationToken.None);
            True(brokenRelay.Receive(new byte[2], 2), "a piece before the break");
            bool settledBeforeRelease = false;
            brokenRelay.Finish(true, "Failed to receive data", () => settledBeforeRelease = brokenRelay.Task.IsCompleted);
            Exception error = Failure(brokenRelay.Task);
            True(error is IOException, "an IOException, got " + error.GetType().Name);
            Equal("Failed to receive data", error.Message, "message");
            True(!settledBeforeRelease, "released before the task settled");

            RecordingReceiver refused = new RecordingReceiver();
            DownloadRelay refusedRelay = Relay(refused, CancellationToken.None);
            refusedRelay.Finish(true, "Cannot connect to destination host", () => { });
            True(Failure(refusedRelay.Task) is IOException, "refused: an IOException");
            Equal(0, refused.Calls.Count, "refused: no OnResponse without a response");

            using (CancellationTokenSource source = new CancellationTokenSource())
            {
                RecordingReceiver aborted = new RecordingReceiver();
                DownloadRelay abortedRelay = Relay(aborted, source.Token);
                True(abortedRelay.Receive(new byte[2], 2), "a piece before the abort");
                source.Cancel();
                abortedRelay.Finish(true, "Request aborted", () => { });
                True(Failure(abortedRelay.Task) is TaskCanceledException, "cancelled");
            }
        }

        // ---- the stub and the transport without a server ----

        private static void StubMainThreadOnly()
        {
            try
            {
                new UnityWebRequest("http://127.0.0.1:1/", "GET");
                throw new Exception("created a UnityWebRequest off the main thread");
            }
            catch (InvalidOperationException)
            {
            }
            Task sent = MainThread.Run(() => new UnityWebRequestTransport().SendAsync(
                new TransportRequest { Method = "GET", Url = "http://127.0.0.1:1/" },
                new RecordingReceiver(),
                CancellationToken.None));
            True(Failure(sent) is IOException, "sent from the main thread, it ran (and found nobody)");
        }

        private static void TransportCancelledBeforeSend()
        {
            using (CancellationTokenSource source = new CancellationTokenSource())
            {
                source.Cancel();
                RecordingReceiver receiver = new RecordingReceiver();
                Task sent = MainThread.Run(() => new UnityWebRequestTransport().SendAsync(
                    new TransportRequest { Method = "GET", Url = "http://127.0.0.1:1/" },
                    receiver,
                    source.Token));
                True(sent.IsCanceled, "cancelled at once");
                Equal(0, receiver.Calls.Count, "no response");
            }
        }

        // ---- end to end, against the reference and the faulty server ----

        private static ConvokeClient Client(string url, IChatTransport transport, int retries = 2)
        {
            return new ConvokeClient(new ConvokeClientOptions
            {
                BaseUrl = url,
                ApiKey = ApiKey,
                Transport = transport,
                MaxRetries = retries,
                RetryBaseDelay = TimeSpan.FromMilliseconds(1),
                MaxRetryDelay = TimeSpan.FromMilliseconds(100)
            });
        }

        /// <summary>Starts a chat on the main thread, as a MonoBehaviour does.</summary>
        private static ChatStream Chat(ConvokeClient client, string message, string conversationId = null)
        {
            return MainThread.Run(() => client.Chat(message, conversationId));
        }

        private static void EndToEndIdFirst()
        {
            using (ConvokeClient client = Client(referenceUrl, new UnityWebRequestTransport()))
            {
                List<string> order = new List<string>();
                bool idTaskDoneAtFirstDelta = false;
                bool handlersOnMainThread = true;
                ChatStream stream = Chat(client, "hello from the unity web request transport");
                stream.ConversationIdReceived += id =>
                {
                    handlersOnMainThread &= MainThread.IsCurrent;
                    lock (order) order.Add("id " + id);
                };
                stream.DeltaReceived += delta =>
                {
                    handlersOnMainThread &= MainThread.IsCurrent;
                    lock (order)
                    {
                        if (!order.Any(entry => entry.StartsWith("delta", StringComparison.Ordinal)))
                            idTaskDoneAtFirstDelta = stream.ConversationId.IsCompleted;
                        order.Add("delta " + delta);
                    }
                };
                string text = Await(stream.Text, "text");
                string conversationId = Await(stream.ConversationId, "id");
                Equal("Echo #1: hello from the unity web request transport", text, "reply");
                Equal(36, conversationId.Length, "uuid length");
                lock (order)
                {
                    Equal("id " + conversationId, order[0], "first callback");
                    True(order.Count > 2, "several deltas");
                    Equal(text, string.Concat(order.Skip(1).Select(entry => entry.Substring(6)).ToArray()), "deltas make the text");
                }
                True(idTaskDoneAtFirstDelta, "the id task had completed when the first delta arrived");
                True(handlersOnMainThread, "handlers ran on the main thread");
            }
        }

        private static void EndToEndPieces()
        {
            CountingTransport counting = new CountingTransport(new UnityWebRequestTransport());
            using (ConvokeClient client = Client(referenceUrl, counting))
            {
                // About a second of streaming (5 ms a word): the stub's main thread is free long before it ends.
                string words = string.Join(" ", Enumerable.Range(0, 200).Select(index => "w" + index).ToArray());
                int piecesAtId = -1;
                ChatStream stream = Chat(client, words);
                stream.ConversationIdReceived += id => piecesAtId = counting.Pieces;
                Equal("Echo #1: " + words, Await(stream.Text, "text"), "reply");
                Equal(1, counting.Responses, "one OnResponse");
                True(!counting.DataBeforeResponse, "OnResponse came before the first OnData");
                True(counting.Pieces > 1, "the body arrived in several pieces, got " + counting.Pieces);
                True(piecesAtId >= 1 && piecesAtId < counting.Pieces,
                    "the id arrived while the body was still streaming (" + piecesAtId + " of " + counting.Pieces + " pieces)");
            }
        }

        private static RecordingReceiver Send(string method, string path, string jsonBody = null)
        {
            RecordingReceiver receiver = new RecordingReceiver();
            TransportRequest request = new TransportRequest
            {
                Method = method,
                Url = referenceUrl + path,
                Headers = new Dictionary<string, string> { { "Authorization", "Bearer " + ApiKey }, { "Accept", "application/json" } },
                JsonBody = jsonBody
            };
            Task sent = MainThread.Run(() => new UnityWebRequestTransport().SendAsync(request, receiver, CancellationToken.None));
            Await(sent, method + " " + path);
            True(!receiver.OffMainThread, method + ": the receiver was called on the main thread");
            True(receiver.Calls.Count > 0 && receiver.Calls[0].StartsWith("response", StringComparison.Ordinal), method + ": OnResponse first");
            Equal(1, receiver.Calls.Count(call => call.StartsWith("response", StringComparison.Ordinal)), method + ": one OnResponse");
            return receiver;
        }

        private static void EndToEndMethods()
        {
            string conversationId;
            using (ConvokeClient client = Client(referenceUrl, new UnityWebRequestTransport()))
            {
                ChatStream stream = Chat(client, "a conversation to rename");
                conversationId = Await(stream.ConversationId, "id");
                Await(stream.Text, "text");
            }
            string path = ConvokeClient.ChatPath.Replace("/chat", "/conversations/") + conversationId;

            RecordingReceiver shown = Send("GET", path);
            Equal(200, shown.Status, "GET status");
            True(shown.ContentType.StartsWith("application/json", StringComparison.Ordinal), "GET content type " + shown.ContentType);
            Equal(conversationId, Json.GetString((Dictionary<string, object>)Json.Parse(shown.Body), "id"), "GET id");

            RecordingReceiver renamed = Send("PATCH", path, "{\"title\":\"Renamed by UnityWebRequest\"}");
            Equal(200, renamed.Status, "PATCH status");
            Equal("Renamed by UnityWebRequest", Json.GetString((Dictionary<string, object>)Json.Parse(renamed.Body), "title"), "PATCH title");

            RecordingReceiver deleted = Send("DELETE", path);
            Equal(204, deleted.Status, "DELETE status");
            Equal("response 204", string.Join("|", deleted.Calls.ToArray()), "DELETE: a status and no body");

            RecordingReceiver missing = Send("GET", path);
            Equal(404, missing.Status, "GET after DELETE");
            Dictionary<string, object> error = Json.GetObject(Json.Parse(missing.Body), "error");
            Equal("not_found", Json.GetString(error, "type"), "common body type");
        }

        private static void EndToEndHttpError()
        {
            using (ConvokeClient client = Client(referenceUrl, new UnityWebRequestTransport()))
            {
                ChatStream stream = Chat(client, "");
                ConvokeHttpException error = Failure(stream.ConversationId) as ConvokeHttpException;
                True(error != null, "a ConvokeHttpException");
                Equal(400, error.Status, "status");
                Equal("invalid_request", error.Type, "type");
                True(Failure(stream.Text) == error, "text fails with the same exception");
            }
        }

        private static void EndToEndStreamError()
        {
            using (ConvokeClient client = Client(faultyUrl, new UnityWebRequestTransport()))
            {
                ChatStream stream = Chat(client, "fail please");
                string conversationId = Await(stream.ConversationId, "id");
                ConvokeStreamException error = Failure(stream.Text) as ConvokeStreamException;
                True(error != null, "a ConvokeStreamException");
                Equal("overloaded_error", error.Type, "type");
                Equal(conversationId, error.ConversationId, "id");
                Equal("Partial reply", error.PartialText, "partial text");
            }
        }

        private static void EndToEndRetries()
        {
            Faults(faultyUrl, "503,429,drop");
            CountingTransport counting = new CountingTransport(new UnityWebRequestTransport());
            using (ConvokeClient client = Client(faultyUrl, counting, 3))
                Equal("Echo #1: eventually", Await(Chat(client, "eventually").Text, "text"), "reply after retries");
            List<Task> sends = counting.Sends;
            Equal(4, sends.Count, "attempts");
            True(Failure(sends[2]) is IOException, "the dropped connection was an IOException");
            Faults(faultyUrl, "503,503");
            using (ConvokeClient client = Client(faultyUrl, new UnityWebRequestTransport(), 1))
            {
                ConvokeHttpException error = Failure(Chat(client, "give up").Text) as ConvokeHttpException;
                True(error != null, "a ConvokeHttpException after the retries");
                Equal(503, error.Status, "status");
                Equal(0.0, error.RetryAfterSeconds.Value, "Retry-After");
            }
        }

        private static void EndToEndCancel()
        {
            CountingTransport counting = new CountingTransport(new UnityWebRequestTransport());
            using (ConvokeClient client = Client(faultyUrl, counting))
            using (HttpClient http = new HttpClient())
            using (ManualResetEventSlim thirdDelta = new ManualResetEventSlim())
            {
                string words = string.Join(" ", Enumerable.Range(0, 400).Select(index => "w" + index).ToArray());
                ChatStream stream = Chat(client, words);
                int received = 0;
                stream.DeltaReceived += delta =>
                {
                    if (Interlocked.Increment(ref received) == 3) thirdDelta.Set();
                };
                string conversationId = Await(stream.ConversationId, "id");
                True(thirdDelta.Wait(Patience), "three deltas");
                // From the test thread: Abort runs off the main thread, as Unity allows.
                stream.Cancel();
                True(Failure(stream.Text) is TaskCanceledException, "the text task is cancelled");
                True(Failure(counting.Sends[0]) is TaskCanceledException, "the transport's task is cancelled");
                string outcome = Await(http.GetStringAsync(faultyUrl + "/__turn-ended/" + conversationId), "turn outcome");
                Equal("client_closed", outcome, "the server saw the client go");
                True(stream.PartialText.Length < ("Echo #1: " + words).Length, "the reply was cut short");
            }
        }

        private static void EndToEndUnreachable()
        {
            Task sent = MainThread.Run(() => new UnityWebRequestTransport().SendAsync(
                new TransportRequest { Method = "POST", Url = "http://127.0.0.1:1/api/v0.3/chat", JsonBody = "{}" },
                new RecordingReceiver(),
                CancellationToken.None));
            True(Failure(sent) is IOException, "the transport fails with an IOException");
            using (ConvokeClient client = Client("http://127.0.0.1:1", new UnityWebRequestTransport(), 1))
            {
                Exception error = Failure(Chat(client, "x").Text);
                True(error is ConvokeNetworkException, "a ConvokeNetworkException, got " + error.GetType().Name);
            }
        }
    }
}
