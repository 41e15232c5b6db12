// End-to-end tests of resuming, stopping and the conversation API against
// the reference server, part of the program in ConvokeClientTests.cs. Network
// cuts come from cut proxies (CutProxy of @convoke/core/testing) that the
// test harness makes and drives over HTTP (--proxies URL): the tests wait on
// the proxy ("cut-done"), on the server (a replay read to its end) or on the
// client's own events, never on the clock.
using System;
using System.Collections.Generic;
using System.IO;
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
        // ---- helpers ----

        /// <summary>A cut proxy in front of the reference server, driven through the harness.</summary>
        private sealed class Proxy : IDisposable
        {
            private readonly HttpClient http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
            private readonly string control;

            /// <summary>A proxy that cuts only when told to (<see cref="Cut"/>).</summary>
            public Proxy() : this("{}") { }

            public Proxy(int cutAfterFrames, int extraBytes)
                : this("{\"cutAfterFrames\":" + cutAfterFrames + ",\"extraBytes\":" + extraBytes + "}") { }

            private Proxy(string body)
            {
                HttpResponseMessage response = http.PostAsync(proxiesUrl + "/proxies", new StringContent(body)).Result;
                object made = Json.Parse(response.Content.ReadAsStringAsync().Result);
                control = proxiesUrl + "/proxies/" + Json.GetString(made, "id");
                Url = Json.GetString(made, "url");
            }

            public string Url { get; private set; }

            /// <summary>Completes once the proxy has cut (since the last heal).</summary>
            public Task CutDone()
            {
                return http.GetAsync(control + "/cut-done");
            }

            /// <summary>Drops every connection now (the answer comes once it has).</summary>
            public void Cut()
            {
                Equal(204, (int)http.PostAsync(control + "/cut", new StringContent("")).Result.StatusCode, "cut");
            }

            public void Heal()
            {
                Equal(204, (int)http.PostAsync(control + "/heal", new StringContent("")).Result.StatusCode, "heal");
            }

            public void Dispose()
            {
                http.DeleteAsync(control).Wait(Patience);
                http.Dispose();
            }
        }

        /// <summary>Records every request, and can hold resume requests until released.</summary>
        private sealed class RecordingTransport : IChatTransport, IDisposable
        {
            private readonly HttpClientTransport inner = new HttpClientTransport();
            public readonly List<TransportRequest> Requests = new List<TransportRequest>();
            public readonly TaskCompletionSource<bool> ResumeRequested = new TaskCompletionSource<bool>();
            public TaskCompletionSource<bool> ResumeGate;
            /// <summary>Runs before each resume request is sent, e.g. to heal the proxy that cut the stream.</summary>
            public Action BeforeResume;
            public int Resumes;
            /// <summary>When set, counts requests sent from another thread (UnityWebRequest needs the main thread).</summary>
            public Thread Expected;
            public int OffThread;
            /// <summary>When set, chat requests wait here (or for their cancellation) before they are sent.</summary>
            public TaskCompletionSource<bool> ChatGate;
            public readonly TaskCompletionSource<bool> ChatRequested = new TaskCompletionSource<bool>();

            public async Task SendAsync(TransportRequest request, ITransportReceiver receiver, CancellationToken cancellationToken)
            {
                lock (Requests) Requests.Add(request);
                if (Expected != null && Thread.CurrentThread != Expected) Interlocked.Increment(ref OffThread);
                if (request.Method == "POST" && request.Url.EndsWith(ConvokeClient.ChatPath, StringComparison.Ordinal) && ChatGate != null)
                {
                    ChatRequested.TrySetResult(true);
                    await Task.WhenAny(ChatGate.Task, Task.Delay(Timeout.Infinite, cancellationToken));
                    cancellationToken.ThrowIfCancellationRequested();
                }
                if (request.Method == "GET" && request.Url.EndsWith("/stream", StringComparison.Ordinal))
                {
                    ResumeRequested.TrySetResult(true);
                    if (ResumeGate != null) await ResumeGate.Task;
                    Interlocked.Increment(ref Resumes);
                    if (BeforeResume != null) BeforeResume();
                }
                await inner.SendAsync(request, receiver, cancellationToken);
            }

            public void Dispose()
            {
                inner.Dispose();
            }
        }

        private static ConvokeClient TurnClient(string url, IChatTransport transport = null, int resumeAttempts = 10, IConversationIdStore store = null)
        {
            return new ConvokeClient(new ConvokeClientOptions
            {
                BaseUrl = url,
                Transport = transport,
                MaxRetries = 0,
                ResumeAttempts = resumeAttempts,
                ResumeBaseDelay = TimeSpan.FromMilliseconds(5),
                MaxResumeDelay = TimeSpan.FromMilliseconds(50),
                ConversationIdStore = store
            });
        }

        private static string Words(string prefix, int count)
        {
            return string.Join(" ", Enumerable.Range(0, count).Select(index => prefix + index).ToArray());
        }

        /// <summary>Waits for the conversation's latest turn to end on the server: a replay of it, read to [DONE].</summary>
        private static void WaitForTurnEnd(string conversationId)
        {
            using (HttpClient http = new HttpClient { Timeout = Patience })
            {
                HttpResponseMessage response = http.GetAsync(referenceUrl + Conversations.PathOf(conversationId) + "/stream").Result;
                response.Content.ReadAsStringAsync().Wait(Patience);
            }
        }

        /// <summary>Follows a stream: its deltas, its states, and whether Failed was raised.</summary>
        private sealed class Watch
        {
            public readonly StringBuilder Deltas = new StringBuilder();
            public readonly List<ChatStreamState> States = new List<ChatStreamState>();
            public Exception Failure;
            public int DeltaCount;

            public Watch(ChatStream stream)
            {
                stream.DeltaReceived += delta =>
                {
                    lock (this)
                    {
                        Deltas.Append(delta);
                        DeltaCount++;
                        Monitor.PulseAll(this);
                    }
                };
                stream.StateChanged += state => { lock (this) States.Add(state); };
                stream.Failed += error => Failure = error;
            }

            public void WaitForDeltas(int count)
            {
                lock (this)
                {
                    while (DeltaCount < count)
                        if (!Monitor.Wait(this, Patience)) throw new Exception("fewer than " + count + " deltas arrived");
                }
            }
        }

        // ---- resume ----

        /// <summary>A transport that, before each resume, waits for the proxy's cut and heals it: the network is back when the client reconnects.</summary>
        private static RecordingTransport Healing(Proxy proxy)
        {
            RecordingTransport transport = new RecordingTransport();
            transport.BeforeResume = () =>
            {
                if (!proxy.CutDone().Wait(Patience)) throw new Exception("the proxy did not cut");
                proxy.Heal();
            };
            return transport;
        }

        private static void EndToEndResumeAfterCut()
        {
            // The metadata event and two deltas pass, and 5 bytes of the next
            // frame; then the connection drops. Each heal lets the next
            // connection through and arms the same cut for it, so a long reply
            // is cut again and again.
            using (Proxy proxy = new Proxy(3, 5))
            using (RecordingTransport transport = Healing(proxy))
            using (ConvokeClient client = TurnClient(proxy.Url, transport))
            {
                string message = Words("r", 30);
                ChatStream stream = client.Chat(message);
                Watch watch = new Watch(stream);
                string text = Await(stream.Text, "text");
                string expected = "Echo #1: " + message;
                Equal(expected, text, "reply");
                Equal(expected, watch.Deltas.ToString(), "every delta once, in order");
                True(transport.Resumes >= 2, "the stream was resumed more than once (" + transport.Resumes + ")");
                Equal(transport.Resumes, watch.States.Count(state => state == ChatStreamState.Reconnecting), "one Reconnecting per resume");
                Equal(ChatStreamState.Completed, watch.States.Last(), "last state");
                Equal(ChatStreamState.Completed, stream.State, "state");
                True(watch.Failure == null, "Failed was not raised");
                string conversationId = Await(stream.ConversationId, "id");
                Conversation stored;
                // Not through the proxy: it may have cut again, after [DONE].
                using (ConvokeClient direct = TurnClient(referenceUrl))
                    stored = Await(direct.Conversations.FetchAsync(conversationId), "stored");
                ConversationMessage reply = stored.Messages.Last();
                Equal(MessageStatus.Complete, reply.Status, "stored status");
                Equal(expected, reply.Content, "stored reply");
            }
        }

        private static void EndToEndResumeHeaders()
        {
            using (Proxy proxy = new Proxy(4, 0))
            using (RecordingTransport transport = Healing(proxy))
            using (ConvokeClient client = TurnClient(proxy.Url, transport))
            {
                ChatStream stream = client.Chat(Words("h", 12));
                Await(stream.Text, "text");
                string turnId = Await(stream.Metadata, "metadata").TurnId;
                True(turnId != null, "the metadata event has a turn id");
                List<TransportRequest> resumes = transport.Requests.Where(request => request.Method == "GET").ToList();
                True(resumes.Count >= 1, "at least one resume request");
                // Metadata and 3 deltas passed before the first cut: seq 3 is the last event received.
                Equal(turnId + ":3", resumes[0].Headers["Last-Event-ID"], "first Last-Event-ID");
                foreach (TransportRequest request in transport.Requests)
                    Equal("unity/" + ConvokeClient.Version, request.Headers[ConvokeClient.ClientHeader], request.Method + " client header");
            }
        }

        private static void EndToEndResumeFromStore()
        {
            // The client is cut mid-reply and held before its first resume
            // request. Meanwhile the turn ends and another device continues
            // the conversation, so the resume names a turn that is no longer
            // the latest: 204, and the rest of the reply comes from the store.
            using (Proxy proxy = new Proxy(3, 0))
            using (RecordingTransport transport = new RecordingTransport { ResumeGate = new TaskCompletionSource<bool>() })
            using (ConvokeClient client = TurnClient(proxy.Url, transport, 3))
            using (ConvokeClient other = TurnClient(referenceUrl))
            {
                string message = Words("s", 30);
                ChatStream stream = client.Chat(message);
                Watch watch = new Watch(stream);
                Await(transport.ResumeRequested.Task, "a resume request");
                string conversationId = Await(stream.ConversationId, "id");
                True(watch.States.Contains(ChatStreamState.Reconnecting), "Reconnecting while held");
                WaitForTurnEnd(conversationId);
                Equal("Echo #2: later", Await(other.Chat("later", conversationId).Text, "the other device's reply"), "other reply");
                proxy.Heal();
                transport.ResumeGate.SetResult(true);
                string expected = "Echo #1: " + message;
                Equal(expected, Await(stream.Text, "text"), "the reply, from the store");
                Equal(expected, watch.Deltas.ToString(), "every piece once");
                Equal(ChatStreamState.Completed, stream.State, "state");
            }
        }

        private static void EndToEndResumeFromStoreCancelled()
        {
            // As above, but the turn is stopped from elsewhere while the
            // client is away: the stored reply says "cancelled", and so does
            // the stream. The reply is far too long to finish first (4000
            // words at 5 ms each; the grace window would cancel it too).
            using (Proxy proxy = new Proxy(3, 0))
            using (RecordingTransport transport = new RecordingTransport { ResumeGate = new TaskCompletionSource<bool>() })
            using (ConvokeClient client = TurnClient(proxy.Url, transport, 3))
            using (ConvokeClient other = TurnClient(referenceUrl))
            {
                string message = Words("c", 4000);
                ChatStream stream = client.Chat(message);
                Watch watch = new Watch(stream);
                Await(transport.ResumeRequested.Task, "a resume request");
                string conversationId = Await(stream.ConversationId, "id");
                True(Await(other.Conversations.FetchAsync(conversationId), "conversation").RunningTurn != null, "the turn runs on");
                using (HttpClient http = new HttpClient())
                {
                    HttpResponseMessage stopped = http.PostAsync(referenceUrl + Conversations.PathOf(conversationId) + "/stop", new StringContent("")).Result;
                    Equal(202, (int)stopped.StatusCode, "stopped from elsewhere");
                }
                WaitForTurnEnd(conversationId);
                Await(other.Chat("later", conversationId).Text, "the other device's reply");
                proxy.Heal();
                transport.ResumeGate.SetResult(true);
                ConvokeStreamException error = Failure(stream.Text) as ConvokeStreamException;
                True(error != null, "a ConvokeStreamException");
                Equal("cancelled", error.Type, "type");
                Equal(conversationId, error.ConversationId, "id");
                string stored = Await(other.Conversations.FetchAsync(conversationId), "stored").Messages[1].Content;
                Equal(stored, error.PartialText, "the partial text is the stored reply");
                Equal(stored, watch.Deltas.ToString(), "every piece of it once");
                Equal(ChatStreamState.Failed, stream.State, "state");
            }
        }

        private static void EndToEndResumeDisabled()
        {
            using (Proxy proxy = new Proxy(3, 0))
            using (ConvokeClient client = TurnClient(proxy.Url, null, 0))
            {
                ChatStream stream = client.Chat(Words("d", 20));
                Watch watch = new Watch(stream);
                ConvokeNetworkException error = Failure(stream.Text) as ConvokeNetworkException;
                True(error != null, "a ConvokeNetworkException");
                Equal(Await(stream.ConversationId, "id"), error.ConversationId, "the id is on the exception");
                True(!watch.States.Contains(ChatStreamState.Reconnecting), "no Reconnecting");
                Equal(ChatStreamState.Failed, stream.State, "state");
            }
        }

        /// <summary>A SynchronizationContext on a thread of its own, like Unity's main thread.</summary>
        private sealed class LoopContext : SynchronizationContext, IDisposable
        {
            private readonly System.Collections.Concurrent.BlockingCollection<KeyValuePair<SendOrPostCallback, object>> queue =
                new System.Collections.Concurrent.BlockingCollection<KeyValuePair<SendOrPostCallback, object>>();

            public LoopContext()
            {
                Thread = new Thread(() =>
                {
                    SetSynchronizationContext(this);
                    foreach (KeyValuePair<SendOrPostCallback, object> item in queue.GetConsumingEnumerable()) item.Key(item.Value);
                }) { IsBackground = true };
                Thread.Start();
            }

            public Thread Thread { get; private set; }

            public override void Post(SendOrPostCallback callback, object state)
            {
                // Like Unity's main thread, which outlives every test's work: what arrives after the
                // test is over is dropped, not thrown on a thread-pool thread (which ends the process).
                try
                {
                    queue.Add(new KeyValuePair<SendOrPostCallback, object>(callback, state));
                }
                catch (InvalidOperationException)
                {
                }
            }

            /// <summary>Runs <paramref name="body"/> on the context's thread and returns its result.</summary>
            public T Run<T>(Func<T> body)
            {
                TaskCompletionSource<T> result = new TaskCompletionSource<T>();
                Post(_ =>
                {
                    try
                    {
                        result.SetResult(body());
                    }
                    catch (Exception error)
                    {
                        result.SetException(error);
                    }
                }, null);
                return Await(result.Task, "the context ran the body");
            }

            public void Dispose()
            {
                queue.CompleteAdding();
            }
        }

        /// <summary>A store that records whether it was called off the given thread.</summary>
        private sealed class ThreadCheckingStore : IConversationIdStore
        {
            private readonly MemoryConversationIdStore inner = new MemoryConversationIdStore();
            public Thread Expected;
            public int Calls;
            public int OffThread;

            private void Check()
            {
                Interlocked.Increment(ref Calls);
                if (Thread.CurrentThread != Expected) Interlocked.Increment(ref OffThread);
            }

            public string Get(string key) { Check(); return inner.Get(key); }
            public void Set(string key, string conversationId) { Check(); inner.Set(key, conversationId); }
            public void Clear(string key) { Check(); inner.Clear(key); }
        }

        private static void EndToEndContext()
        {
            using (LoopContext context = new LoopContext())
            using (Proxy proxy = new Proxy(3, 0))
            using (RecordingTransport transport = Healing(proxy))
            {
                ThreadCheckingStore store = new ThreadCheckingStore { Expected = context.Thread };
                transport.Expected = context.Thread;
                using (ConvokeClient client = TurnClient(proxy.Url, transport, 10, store))
                {
                    int offThread = 0;
                    List<ChatStreamState> states = new List<ChatStreamState>();
                    Action check = () => { if (Thread.CurrentThread != context.Thread) Interlocked.Increment(ref offThread); };
                    ChatStream stream = context.Run(() =>
                    {
                        ChatStream started = client.Chat(Words("t", 12));
                        started.StateChanged += state => { check(); states.Add(state); };
                        started.MetadataReceived += metadata => check();
                        started.DeltaReceived += delta => check();
                        started.Completed += text => check();
                        return started;
                    });
                    Equal("Echo #1: " + Words("t", 12), Await(stream.Text, "text"), "reply");
                    True(transport.Resumes >= 1, "the stream was resumed");
                    Equal(0, offThread, "handlers called off the context's thread");
                    True(states.Contains(ChatStreamState.Reconnecting), "Reconnecting was raised");
                    Equal(ChatStreamState.Completed, states.Last(), "last state");
                    True(store.Calls >= 2, "the store was read and written");
                    Equal(0, store.OffThread, "store calls off the context's thread");
                    // Through the proxy, which may have cut again after [DONE]: only where it was sent from counts.
                    string conversationId = Await(stream.ConversationId, "id");
                    Task fetch = context.Run(() => client.Conversations.FetchAsync(conversationId));
                    fetch.ContinueWith(finished => finished.Exception).Wait(Patience);
                    Equal(0, transport.OffThread, "requests sent off the context's thread, resumes included");
                }
            }
        }

        // ---- stop ----

        private static void EndToEndStop()
        {
            using (ConvokeClient client = TurnClient(referenceUrl))
            {
                // Far too long to finish before the stop (4000 words at 5 ms each).
                ChatStream stream = client.Chat(Words("w", 4000));
                Watch watch = new Watch(stream);
                watch.WaitForDeltas(3);
                string completedWith = null;
                stream.Completed += final => completedWith = final;
                Await(stream.Stop().ContinueWith(task => { if (task.IsFaulted) throw task.Exception; return true; }), "stop");
                string text = Await(stream.Text, "text after stop");
                Equal(ChatStreamState.Stopped, stream.State, "state");
                Equal(ChatStreamState.Stopped, watch.States.Last(), "last state raised");
                Equal(text, completedWith, "Completed with the text so far");
                Equal(watch.Deltas.ToString(), text, "the text is what arrived");
                True(watch.Failure == null, "Failed was not raised");
                True(text.Length < ("Echo #1: " + Words("w", 4000)).Length, "the reply was cut short");
                string conversationId = Await(stream.ConversationId, "id");
                WaitForTurnEnd(conversationId);
                Conversation stored = Await(client.Conversations.GetAsync(conversationId), "stored");
                ConversationMessage reply = stored.Messages.Last();
                Equal("assistant", reply.Role, "last message role");
                Equal(MessageStatus.Cancelled, reply.Status, "stored status");
                True(reply.Content.StartsWith(text, StringComparison.Ordinal), "the stored reply begins with the text shown");
                True(stored.RunningTurn == null, "no running turn");
                Await(stream.Stop().ContinueWith(task => task.IsFaulted), "a second stop");
            }
        }

        private static void EndToEndStopBeforeMetadata()
        {
            // The chat request is held before it is sent: no metadata event can have arrived.
            using (RecordingTransport transport = new RecordingTransport { ChatGate = new TaskCompletionSource<bool>() })
            using (ConvokeClient client = TurnClient(referenceUrl, transport))
            {
                ChatStream stream = client.Chat("never mind");
                Await(transport.ChatRequested.Task, "the chat request");
                Await(stream.Stop().ContinueWith(task => task.IsFaulted), "stop");
                Exception error = Failure(stream.Text);
                True(error is TaskCanceledException, "text cancelled, got " + error.GetType().Name);
                True(stream.ConversationId.IsCanceled, "no conversation id");
                Equal(ChatStreamState.Cancelled, stream.State, "state");
                Equal(0, transport.Requests.Count(request => request.Url.EndsWith("/stop", StringComparison.Ordinal)), "no stop request");
            }
        }

        // ---- conversations ----

        private static void EndToEndConversations()
        {
            using (ConvokeClient client = TurnClient(referenceUrl))
            {
                List<string> ids = new List<string>();
                foreach (string message in new[] { "page one", "page two", "page three" })
                {
                    ChatStream stream = client.Chat(message, "new");
                    Await(stream.Text, message);
                    ids.Add(Await(stream.ConversationId, "id"));
                }
                // Every page, two at a time: ours appear once each, newest first.
                List<string> listed = new List<string>();
                string cursor = null;
                int pages = 0;
                do
                {
                    ConversationPage page = Await(client.Conversations.ListAsync(2, cursor), "page");
                    True(page.Items.Count <= 2, "at most 2 per page");
                    listed.AddRange(page.Items.Select(item => item.Id));
                    cursor = page.NextCursor;
                    pages++;
                } while (cursor != null && pages < 1000);
                True(pages >= 2, "several pages");
                Equal(listed.Count, listed.Distinct().Count(), "no conversation twice");
                List<string> ours = listed.Where(ids.Contains).ToList();
                Equal(string.Join(",", Enumerable.Reverse(ids).ToArray()), string.Join(",", ours.ToArray()), "ours, newest first");
                ConversationSummary first = Await(client.Conversations.ListAsync(1), "first page").Items[0];
                Equal(ids[2], first.Id, "the newest first");
                Equal("page three", first.Title, "title from the message");

                Conversation conversation = Await(client.Conversations.GetAsync(ids[0]), "get");
                Equal(ids[0], conversation.Id, "id");
                Equal(2, conversation.Messages.Count, "messages");
                Equal("user", conversation.Messages[0].Role, "user first");
                Equal("page one", conversation.Messages[0].Content, "user content");
                Equal(MessageStatus.Complete, conversation.Messages[0].Status, "user status");
                Equal("assistant", conversation.Messages[1].Role, "then the reply");
                Equal("Echo #1: page one", conversation.Messages[1].Content, "reply content");
                Equal(MessageStatus.Complete, conversation.Messages[1].Status, "reply status");
                True(conversation.RunningTurn == null, "no running turn");
                True(conversation.CreatedAt.Year >= 2025, "created_at parsed");

                ConversationSummary renamed = Await(client.Conversations.RenameAsync(ids[0], "Renamed from C#"), "rename");
                Equal("Renamed from C#", renamed.Title, "renamed title");
                Equal("Renamed from C#", Await(client.Conversations.GetAsync(ids[0]), "get after rename").Title, "title after rename");

                Await(client.Conversations.DeleteAsync(ids[1]).ContinueWith(task => { if (task.IsFaulted) throw task.Exception; return true; }), "delete");
                ConvokeHttpException missing = Failure(client.Conversations.GetAsync(ids[1])) as ConvokeHttpException;
                True(missing != null, "a ConvokeHttpException after delete");
                Equal(404, missing.Status, "status");
                Equal("not_found", missing.Type, "type");
                ConvokeHttpException again = Failure(client.Conversations.DeleteAsync(ids[1])) as ConvokeHttpException;
                True(again != null && again.Status == 404, "deleting again is a 404");
                ConvokeHttpException renameMissing = Failure(client.Conversations.RenameAsync(ids[1], "x")) as ConvokeHttpException;
                True(renameMissing != null && renameMissing.Status == 404, "renaming a deleted conversation is a 404");
                True(!Await(client.Conversations.ListAsync(100), "list").Items.Any(item => item.Id == ids[1]), "not listed");
            }
        }

        private static void EndToEndConversationCache()
        {
            using (ConvokeClient client = TurnClient(referenceUrl))
            {
                ChatStream stream = client.Chat("cache me", "new");
                Await(stream.Text, "text");
                string id = Await(stream.ConversationId, "id");
                Conversation first = Await(client.Conversations.GetAsync(id), "get");
                True(Await(client.Conversations.GetAsync(id), "get again") == first, "a second get is served from the cache");
                client.Conversations.Invalidate(id);
                Conversation fetched = Await(client.Conversations.GetAsync(id), "get after Invalidate");
                True(fetched != first, "Invalidate drops it");
                client.Conversations.InvalidateAll();
                Conversation again = Await(client.Conversations.GetAsync(id), "get after InvalidateAll");
                True(again != fetched, "InvalidateAll drops it");
                Await(client.Chat("and more", id).Text, "second chat");
                Conversation afterChat = Await(client.Conversations.GetAsync(id), "get after a chat");
                Equal(4, afterChat.Messages.Count, "a chat in the conversation drops it");
                Await(client.Conversations.RenameAsync(id, "Cached"), "rename");
                Conversation afterRename = Await(client.Conversations.GetAsync(id), "get after rename");
                Equal("Cached", afterRename.Title, "a rename drops it");
                Conversation cached;
                True(client.Conversations.TryGetCached(id, out cached) && cached == afterRename, "cached again");
                Await(client.Conversations.DeleteAsync(id).ContinueWith(task => true), "delete");
                True(!client.Conversations.TryGetCached(id, out cached), "a delete drops it");
            }
        }

        // ---- persistence and headers ----

        private static void EndToEndPersistence()
        {
            string directory = Path.Combine(Path.GetTempPath(), "convoke-ids-" + Guid.NewGuid().ToString("N"));
            try
            {
                string conversationId;
                using (ConvokeClient client = TurnClient(referenceUrl, null, 5, new FileConversationIdStore(directory)))
                {
                    True(client.CurrentConversationId() == null, "nothing stored yet");
                    ChatStream stream = client.Chat("remember me");
                    Await(stream.Text, "first text");
                    conversationId = Await(stream.ConversationId, "id");
                    Equal(conversationId, client.CurrentConversationId(), "stored at the metadata event");
                }
                // An app restart: a new client, a new store object on the same folder.
                using (ConvokeClient client = TurnClient(referenceUrl, null, 5, new FileConversationIdStore(directory)))
                {
                    Equal(conversationId, client.CurrentConversationId(), "read back");
                    ChatStream stream = client.Chat("still there?");
                    Equal(conversationId, Await(stream.ConversationId, "continued id"), "same conversation");
                    Equal("Echo #2: still there?", Await(stream.Text, "second text"), "history kept");
                    client.ForgetConversation();
                    ChatStream fresh = client.Chat("start over");
                    True(Await(fresh.ConversationId, "new id") != conversationId, "a new conversation after ForgetConversation");
                    Equal("Echo #1: start over", Await(fresh.Text, "fresh text"), "fresh history");
                    Equal(Await(fresh.ConversationId, "new id"), client.CurrentConversationId(), "the new id is stored");
                }
            }
            finally
            {
                if (Directory.Exists(directory)) Directory.Delete(directory, true);
            }
        }

        private static double UnityChatRequests()
        {
            using (HttpClient http = new HttpClient())
            {
                string text = http.GetStringAsync(metricsUrl).Result;
                double total = 0;
                foreach (string line in text.Split('\n'))
                {
                    if (!line.StartsWith("chat_requests_total{", StringComparison.Ordinal) || line.IndexOf("client=\"unity\"", StringComparison.Ordinal) < 0)
                        continue;
                    total += double.Parse(line.Substring(line.LastIndexOf(' ') + 1), System.Globalization.CultureInfo.InvariantCulture);
                }
                return total;
            }
        }

        /// <summary>Reads a response to its end.</summary>
        private sealed class DrainingReceiver : ITransportReceiver
        {
            public int Status;

            public void OnResponse(int status, string contentType, string retryAfter)
            {
                Status = status;
            }

            public bool OnData(byte[] buffer, int offset, int count)
            {
                return true;
            }
        }

        private static void EndToEndClientMetrics()
        {
            double before = UnityChatRequests();
            using (ConvokeClient client = TurnClient(referenceUrl))
                Await(client.Chat("count me").Text, "text");
            Equal(before + 1, UnityChatRequests(), "chat_requests_total{client=\"unity\"} after a chat");
            // Without X-Convoke-Client, the transport's User-Agent alone says Unity.
            using (HttpClientTransport transport = new HttpClientTransport())
            {
                DrainingReceiver receiver = new DrainingReceiver();
                TransportRequest request = new TransportRequest
                {
                    Method = "POST",
                    Url = referenceUrl + ConvokeClient.ChatPath,
                    Headers = new Dictionary<string, string> { { "Accept", "text/event-stream" } },
                    JsonBody = "{\"message\":\"user agent only\",\"stream\":true}"
                };
                Await(transport.SendAsync(request, receiver, CancellationToken.None).ContinueWith(task => { if (task.IsFaulted) throw task.Exception; return true; }), "plain request");
                Equal(200, receiver.Status, "status");
            }
            Equal(before + 2, UnityChatRequests(), "chat_requests_total{client=\"unity\"} after a request with only the User-Agent");
        }

        private static void FileStoreRoundTrip()
        {
            string directory = Path.Combine(Path.GetTempPath(), "convoke-ids-" + Guid.NewGuid().ToString("N"));
            try
            {
                FileConversationIdStore store = new FileConversationIdStore(directory);
                Equal(null, store.Get("default"), "empty");
                store.Set("default", "a");
                store.Set("npc/guard ü", "b");
                store.Set("default", "c");
                FileConversationIdStore reopened = new FileConversationIdStore(directory);
                Equal("c", reopened.Get("default"), "last write wins");
                Equal("b", reopened.Get("npc/guard ü"), "any key");
                reopened.Clear("default");
                Equal(null, store.Get("default"), "cleared");
                Equal("b", store.Get("npc/guard ü"), "other keys kept");
                Equal(1, Directory.GetFiles(directory).Length, "one file per key, no leftovers");
            }
            finally
            {
                if (Directory.Exists(directory)) Directory.Delete(directory, true);
            }
        }
    }
}
