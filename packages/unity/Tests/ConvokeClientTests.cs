// Tests of the runtime that need no Unity: the SSE parser over every way a
// body can be cut, the JSON reader, the event model, and end-to-end chats
// against a running server. Under Mono: compile with mcs and run the program
// (see the package README); it prints PASS/FAIL per test and
// "N passed, N failed, N skipped", and exits non-zero on any failure
// (TestSupport.cs).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Net.Http;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using static Convoke.Tests.TestSupport;

namespace Convoke.Tests
{
    public static partial class ConvokeClientTests
    {
        private static string referenceUrl;
        private static string faultyUrl;
        private static string proxiesUrl;
        private static string metricsUrl;
        private static string keyedUrl;

        private const string Stream =
            "data: {\"type\":\"metadata\",\"conversation_id\":\"c-1\",\"model\":\"unified-chat\",\"timestamp\":1764081000}\n\n" +
            ": ping\n\n" +
            "data: {\"type\":\"content\",\"delta\":{\"content\":\"H\\u00e9llo \\ud83d\\udc4b \u00e9\u4e2d\"}}\n\n" +
            "data: {\"type\":\"content\",\"delta\":{\"content\":\" there!\"}}\n\n" +
            "data: [DONE]\n\n";

        private static readonly string[] ExpectedData =
        {
            "{\"type\":\"metadata\",\"conversation_id\":\"c-1\",\"model\":\"unified-chat\",\"timestamp\":1764081000}",
            "{\"type\":\"content\",\"delta\":{\"content\":\"H\\u00e9llo \\ud83d\\udc4b \u00e9\u4e2d\"}}",
            "{\"type\":\"content\",\"delta\":{\"content\":\" there!\"}}",
            "[DONE]"
        };

        private static readonly List<KeyValuePair<string, Action>> Tests = new List<KeyValuePair<string, Action>>
        {
            Test("sse parses a whole body", SseWholeBody),
            Test("sse gives the same events at every split point", SseEverySplitPoint),
            Test("sse gives the same events for every pair of split points", SseEveryPairOfSplitPoints),
            Test("sse reads one byte at a time", SseOneByteAtATime),
            Test("sse reads CRLF and CR line endings at every split point", SseLineEndings),
            Test("sse reports comments and does not dispatch them", SseComments),
            Test("sse joins data lines and keeps event names and ids", SseFields),
            Test("json reads escapes, surrogate pairs, numbers and nesting", JsonReads),
            Test("json rejects malformed text", JsonRejects),
            Test("events decode metadata, content, error, done and unknown types", EventsDecode),
            Test("e2e: the id arrives before the first delta, then the full reply", EndToEndIdFirst),
            Test("e2e: a late subscriber gets the id and every delta replayed", EndToEndLateSubscriber),
            Test("e2e: resuming keeps the id and the history", EndToEndResume),
            Test("e2e: cancelling mid-stream cancels the tasks", EndToEndCancel),
            Test("e2e: cancelling closes the connection; the server keeps the turn and resuming continues", EndToEndCancelClosesConnection),
            Test("e2e: a cancellation token works before the first event", EndToEndTokenBeforeStart),
            Test("e2e: an error status is a ConvokeHttpException with the common body", EndToEndHttpError),
            Test("e2e: an error event is a ConvokeStreamException after the id", EndToEndStreamError),
            Test("e2e: 503, 429 and a dropped connection are retried before the first event", EndToEndRetries),
            Test("e2e: an unreachable server is a ConvokeNetworkException", EndToEndUnreachable),
            Test("e2e: cut mid-reply, the stream reconnects and the whole reply arrives exactly once", EndToEndResumeAfterCut),
            Test("e2e: a reconnection sends the Last-Event-ID received last; every request sends X-Convoke-Client", EndToEndResumeHeaders),
            Test("e2e: nothing left to replay (204), the stream finishes from the stored reply", EndToEndResumeFromStore),
            Test("e2e: nothing left to replay (204) and a reply stored cancelled fail the stream as cancelled", EndToEndResumeFromStoreCancelled),
            Test("e2e: a cut with reconnection disabled fails with a ConvokeNetworkException", EndToEndResumeDisabled),
            Test("e2e: events, states and the id store run on the caller's SynchronizationContext, reconnecting included", EndToEndContext),
            Test("e2e: Stop ends the stream quietly and the reply is stored cancelled", EndToEndStop),
            Test("e2e: Stop before the metadata event cancels the request", EndToEndStopBeforeMetadata),
            Test("e2e: conversations list in pages with a cursor, get with statuses, rename, delete, then 404", EndToEndConversations),
            Test("e2e: the conversation cache serves gets until a rename, delete, chat or Invalidate", EndToEndConversationCache),
            Test("e2e: a new client with the same FileConversationIdStore continues the conversation", EndToEndPersistence),
            Test("e2e: the server counts the chat as client=\"unity\" in /metrics, by X-Convoke-Client or the User-Agent alone", EndToEndClientMetrics),
            Test("file store: ids per key survive a new store, clear forgets one", FileStoreRoundTrip),
            Test("e2e: websocket: the id arrives before the first delta, then the full reply; turns share one socket", SocketIdFirst),
            Test("e2e: websocket: turns started together interleave on one socket, each gets its own reply", SocketMultiplexed),
            Test("e2e: websocket: an error frame before the turn is the ConvokeHttpException HTTP raises; the socket stays open", SocketPreStartError),
            Test("e2e: websocket: cancelling ends the stream; the socket and the turn carry on", SocketCancel),
            Test("e2e: websocket: Stop sends chat.stop, ends the stream quietly, the reply is stored cancelled", SocketStop),
            Test("e2e: websocket: dropped mid-reply, chat.resume with the last event_id on a new socket; the reply arrives exactly once", SocketResumeAfterDrop),
            Test("e2e: websocket: no_turn after a drop finishes the stream from the stored reply, as HTTP's 204", SocketResumeNoTurn),
            Test("e2e: websocket: events, states and the id store run on the caller's SynchronizationContext, reconnecting included", SocketContext),
            Test("e2e: websocket: a connection that cannot set headers opens with a ticket", SocketTicket),
            Test("e2e: websocket: the key travels as a header on the upgrade; a wrong or missing one is 401 unauthenticated, as on HTTP", SocketCredentials),
        };

        public static int Main(string[] args)
        {
            referenceUrl = Option(args, "--reference");
            faultyUrl = Option(args, "--faulty");
            proxiesUrl = Option(args, "--proxies");
            metricsUrl = Option(args, "--metrics");
            keyedUrl = Option(args, "--keyed");
            bool servers = referenceUrl != null && faultyUrl != null && proxiesUrl != null && metricsUrl != null && keyedUrl != null;
            return Run(Tests, args, servers, "pass --reference URL --faulty URL --proxies URL --metrics URL --keyed URL");
        }

        // ---- SSE parser ----

        private static List<string> Parse(IEnumerable<byte[]> pieces)
        {
            List<string> data = new List<string>();
            SseParser parser = new SseParser();
            parser.EventParsed += parsed => data.Add(parsed.Data);
            foreach (byte[] piece in pieces) parser.Feed(piece, 0, piece.Length);
            return data;
        }

        private static void SameEvents(List<string> actual, string where)
        {
            Equal(ExpectedData.Length, actual.Count, where + " event count");
            for (int index = 0; index < ExpectedData.Length; index++) Equal(ExpectedData[index], actual[index], where + " event " + index);
        }

        private static byte[] Slice(byte[] bytes, int start, int end)
        {
            byte[] slice = new byte[end - start];
            Array.Copy(bytes, start, slice, 0, end - start);
            return slice;
        }

        private static void SseWholeBody()
        {
            SameEvents(Parse(new[] { Encoding.UTF8.GetBytes(Stream) }), "whole");
        }

        private static void SseEverySplitPoint()
        {
            byte[] bytes = Encoding.UTF8.GetBytes(Stream);
            for (int split = 1; split < bytes.Length; split++)
                SameEvents(Parse(new[] { Slice(bytes, 0, split), Slice(bytes, split, bytes.Length) }), "split at " + split);
        }

        private static void SseEveryPairOfSplitPoints()
        {
            byte[] bytes = Encoding.UTF8.GetBytes(Stream);
            for (int first = 1; first < bytes.Length; first++)
                for (int second = first; second < bytes.Length; second++)
                    SameEvents(
                        Parse(new[] { Slice(bytes, 0, first), Slice(bytes, first, second), Slice(bytes, second, bytes.Length) }),
                        "splits at " + first + "," + second);
        }

        private static void SseOneByteAtATime()
        {
            byte[] bytes = Encoding.UTF8.GetBytes(Stream);
            SameEvents(Parse(bytes.Select(single => new[] { single })), "byte by byte");
        }

        private static void SseLineEndings()
        {
            foreach (string ending in new[] { "\r\n", "\r" })
            {
                byte[] bytes = Encoding.UTF8.GetBytes(Stream.Replace("\n", ending));
                SameEvents(Parse(new[] { bytes }), "whole " + (ending == "\r" ? "CR" : "CRLF"));
                for (int split = 1; split < bytes.Length; split++)
                    SameEvents(Parse(new[] { Slice(bytes, 0, split), Slice(bytes, split, bytes.Length) }), "split at " + split);
            }
        }

        private static void SseComments()
        {
            List<string> comments = new List<string>();
            List<string> data = new List<string>();
            SseParser parser = new SseParser();
            parser.CommentParsed += comments.Add;
            parser.EventParsed += parsed => data.Add(parsed.Data);
            parser.Feed(Encoding.UTF8.GetBytes(": ping\n\n:another\r\ndata: x\n\n"));
            Equal(2, comments.Count, "comments");
            Equal("ping", comments[0], "first comment");
            Equal("another", comments[1], "second comment");
            Equal(1, data.Count, "events");
            Equal("x", data[0], "data");
        }

        private static void SseFields()
        {
            List<SseEvent> events = SseParser.ParseAll(Encoding.UTF8.GetBytes(
                "\uFEFFid: 7\nevent: note\ndata: a\ndata:b\ndata\n\nid: 8\nretry: 10\n\ndata: c\n\ndata: unterminated"));
            Equal(2, events.Count, "events (an id-only block and an unterminated event dispatch nothing)");
            Equal("a\nb\n", events[0].Data, "joined data");
            Equal("note", events[0].EventName, "event name");
            Equal("7", events[0].Id, "id");
            Equal(null, events[1].EventName, "event name resets");
            Equal("8", events[1].Id, "last id carries over");
        }

        // ---- JSON and events ----

        private static void JsonReads()
        {
            Dictionary<string, object> value = (Dictionary<string, object>)Json.Parse(
                "{ \"s\": \"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\udc4b\", \"n\": -12.5e1, \"t\": true, \"f\": false, \"z\": null, \"a\": [1, {\"k\": []}] }");
            Equal("a\"b\\c/d\n\u00e9\ud83d\udc4b", (string)value["s"], "string");
            Equal(-125.0, (double)value["n"], "number");
            Equal(true, (bool)value["t"], "true");
            Equal(false, (bool)value["f"], "false");
            Equal(null, value["z"], "null");
            Equal(2, ((List<object>)value["a"]).Count, "array");
            string quoted = Json.Quote("line\nquote\" back\\ tab\t \u0001 \u00e9");
            Equal("line\nquote\" back\\ tab\t \u0001 \u00e9", (string)Json.Parse(quoted), "round trip");
        }

        private static void JsonRejects()
        {
            foreach (string bad in new[] { "", "{", "{\"a\":}", "[1,]", "\"unterminated", "tru", "{\"a\":1} extra", "\"\\x\"" })
            {
                try
                {
                    Json.Parse(bad);
                }
                catch (FormatException)
                {
                    continue;
                }
                throw new Exception("accepted " + bad);
            }
        }

        private static void EventsDecode()
        {
            ChatEvent metadata = ChatEvent.Decode(
                "{\"type\":\"metadata\",\"conversation_id\":\"abc\",\"model\":\"unified-chat\",\"timestamp\":1764081000,\"temporary\":true}");
            Equal(ChatEventType.Metadata, metadata.Type, "type");
            Equal("abc", metadata.Metadata.ConversationId, "id");
            Equal(1764081000L, metadata.Metadata.Timestamp, "timestamp");
            Equal(true, metadata.Metadata.Temporary, "temporary");
            Equal(false, ChatEvent.Decode("{\"type\":\"metadata\",\"conversation_id\":\"x\",\"model\":\"m\",\"timestamp\":1}").Metadata.Temporary, "not temporary");
            Equal("hi", ChatEvent.Decode("{\"type\":\"content\",\"delta\":{\"content\":\"hi\"}}").Delta, "delta");
            ChatEvent error = ChatEvent.Decode("{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}");
            Equal("overloaded_error", error.ErrorType, "error type");
            Equal("busy", error.ErrorMessage, "error message");
            Equal(ChatEventType.Done, ChatEvent.Decode("[DONE]").Type, "done");
            Equal(ChatEventType.Unknown, ChatEvent.Decode("{\"type\":\"usage\"}").Type, "unknown");
            try
            {
                ChatEvent.Decode("{\"type\":\"metadata\"}");
                throw new Exception("accepted metadata without an id");
            }
            catch (ConvokeProtocolException)
            {
            }
        }

        // ---- end to end ----

        private static ConvokeClient Client(string url, int retries = 2)
        {
            return new ConvokeClient(new ConvokeClientOptions
            {
                BaseUrl = url,
                ApiKey = "alice-key-0123456789abcdef-ghijklmnopqrstuvwxyz",
                MaxRetries = retries,
                RetryBaseDelay = TimeSpan.FromMilliseconds(1),
                MaxRetryDelay = TimeSpan.FromMilliseconds(100)
            });
        }

        private static void EndToEndIdFirst()
        {
            using (ConvokeClient client = Client(referenceUrl))
            {
                ExpectIdFirst(client.Chat("hello from mono"), "Echo #1: hello from mono");
            }
        }

        /// <summary>
        /// Reads a stream to its end and checks the id came first: its callback before any delta,
        /// its task complete when the first delta arrived, then several deltas making the reply.
        /// Subscribes at once, so call it on a stream just started. Returns the conversation id.
        /// </summary>
        private static string ExpectIdFirst(ChatStream stream, string reply)
        {
            List<string> order = new List<string>();
            bool idTaskDoneAtFirstDelta = false;
            stream.ConversationIdReceived += id => { lock (order) order.Add("id " + id); };
            stream.DeltaReceived += delta =>
            {
                lock (order)
                {
                    if (!order.Any(entry => entry.StartsWith("delta", StringComparison.Ordinal)))
                        idTaskDoneAtFirstDelta = stream.ConversationId.IsCompleted;
                    order.Add("delta " + delta);
                }
            };
            string text = Await(stream.Text, "text");
            string conversationId = Await(stream.ConversationId, "id");
            Equal(reply, text, "reply");
            Equal(36, conversationId.Length, "uuid length");
            Equal("id " + conversationId, order[0], "first callback");
            True(order.Count > 2, "several deltas");
            True(idTaskDoneAtFirstDelta, "the id task had completed when the first delta arrived");
            Equal(text, string.Concat(order.Skip(1).Select(entry => entry.Substring(6)).ToArray()), "deltas make the text");
            return conversationId;
        }

        private static void EndToEndLateSubscriber()
        {
            using (ConvokeClient client = Client(referenceUrl))
            {
                ChatStream stream = client.Chat("late subscriber");
                string text = Await(stream.Text, "text");
                string replayedId = null;
                StringBuilder replayed = new StringBuilder();
                string completed = null;
                stream.ConversationIdReceived += id => replayedId = id;
                stream.DeltaReceived += delta => replayed.Append(delta);
                stream.Completed += final => completed = final;
                Equal(Await(stream.ConversationId, "id"), replayedId, "replayed id");
                Equal(text, replayed.ToString(), "replayed deltas");
                Equal(text, completed, "replayed completion");
            }
        }

        private static void EndToEndResume()
        {
            using (ConvokeClient client = Client(referenceUrl))
            {
                ChatStream first = client.Chat("first");
                string conversationId = Await(first.ConversationId, "id");
                Await(first.Text, "first text");
                ChatStream second = client.Chat("second", conversationId);
                Equal(conversationId, Await(second.ConversationId, "resumed id"), "same id");
                Equal("Echo #2: second", Await(second.Text, "second text"), "history kept");
            }
        }

        private static void EndToEndCancel()
        {
            using (ConvokeClient client = Client(referenceUrl))
            {
                string words = string.Join(" ", Enumerable.Range(0, 400).Select(index => "w" + index).ToArray());
                ChatStream stream = client.Chat(words);
                int received = 0;
                Exception reported = null;
                stream.DeltaReceived += delta =>
                {
                    if (Interlocked.Increment(ref received) == 3) stream.Cancel();
                };
                stream.Failed += error => reported = error;
                string conversationId = Await(stream.ConversationId, "id");
                try
                {
                    stream.Text.Wait(Patience);
                    throw new Exception("the text completed despite cancellation");
                }
                catch (AggregateException error)
                {
                    True(error.InnerException is TaskCanceledException, "text task cancelled, got " + error.InnerException.GetType().Name);
                }
                True(stream.Text.IsCanceled, "text task is cancelled");
                True(reported is OperationCanceledException, "Failed raised with OperationCanceledException");
                True(stream.PartialText.Length < ("Echo #1: " + words).Length, "the reply was cut short");
                Equal(36, conversationId.Length, "the id had arrived");
            }
        }

        private static void EndToEndCancelClosesConnection()
        {
            using (ConvokeClient client = Client(faultyUrl))
            using (HttpClient http = new HttpClient())
            {
                string words = string.Join(" ", Enumerable.Range(0, 400).Select(index => "w" + index).ToArray());
                ChatStream stream = client.Chat(words);
                int received = 0;
                stream.DeltaReceived += delta =>
                {
                    if (Interlocked.Increment(ref received) == 3) stream.Cancel();
                };
                string conversationId = Await(stream.ConversationId, "id");
                // Answers once the server has ended and stored the turn.
                string outcome = Await(http.GetStringAsync(faultyUrl + "/__turn-ended/" + conversationId), "turn outcome");
                Equal("client_closed", outcome, "the server saw the client go");
                ChatStream next = client.Chat("after cancel", conversationId);
                Equal("Echo #2: after cancel", Await(next.Text, "resumed text"), "the cancelled turn was kept");
            }
        }

        private static void EndToEndTokenBeforeStart()
        {
            using (ConvokeClient client = Client(referenceUrl))
            using (CancellationTokenSource source = new CancellationTokenSource())
            {
                source.Cancel();
                ChatStream stream = client.Chat("never", null, null, source.Token);
                Exception error = Failure(stream.ConversationId);
                True(error is TaskCanceledException, "id task cancelled, got " + error.GetType().Name);
            }
        }

        private static void EndToEndHttpError()
        {
            using (ConvokeClient client = Client(referenceUrl))
            {
                ChatStream stream = client.Chat("");
                ConvokeHttpException error = Failure(stream.ConversationId) as ConvokeHttpException;
                True(error != null, "a ConvokeHttpException");
                Equal(400, error.Status, "status");
                Equal("invalid_request", error.Type, "type");
                True(Failure(stream.Text) == error, "text fails with the same exception");
            }
        }

        private static void EndToEndStreamError()
        {
            using (ConvokeClient client = Client(faultyUrl))
            {
                ChatStream stream = client.Chat("fail please");
                string conversationId = Await(stream.ConversationId, "id");
                ConvokeStreamException error = Failure(stream.Text) as ConvokeStreamException;
                True(error != null, "a ConvokeStreamException");
                Equal("overloaded_error", error.Type, "type");
                Equal("The model is overloaded", error.Message, "message");
                Equal(conversationId, error.ConversationId, "id");
                Equal("Partial reply", error.PartialText, "partial text");
            }
        }

        private static void EndToEndRetries()
        {
            Faults(faultyUrl, "503,429,drop");
            using (ConvokeClient client = Client(faultyUrl, 3))
                Equal("Echo #1: eventually", Await(client.Chat("eventually").Text, "text"), "reply after retries");
            Faults(faultyUrl, "503,503");
            using (ConvokeClient client = Client(faultyUrl, 1))
            {
                ConvokeHttpException error = Failure(client.Chat("give up").Text) as ConvokeHttpException;
                True(error != null, "a ConvokeHttpException after the retries");
                Equal(503, error.Status, "status");
                Equal(0.0, error.RetryAfterSeconds.Value, "Retry-After");
            }
        }

        private static void EndToEndUnreachable()
        {
            using (ConvokeClient client = Client("http://127.0.0.1:1", 1))
            {
                Exception error = Failure(client.Chat("x").Text);
                True(error is ConvokeNetworkException, "a ConvokeNetworkException, got " + error.GetType().Name);
            }
        }
    }
}
