// One streamed reply. The request is already running when you get it, and
// every event is safe to subscribe to late: a handler added after the
// metadata (or some deltas) arrived is called at once with what it missed,
// then with what follows, in order. Events are raised before the matching
// task (ConversationId, Text) completes. Handlers run on the SynchronizationContext
// that called Chat (Unity's main thread in a MonoBehaviour), or on the reading
// thread when there is none.
//
// A stream whose connection breaks after the metadata event reconnects to the
// turn (State becomes Reconnecting, then Streaming again) and goes on raising
// the same events: nothing is repeated and nothing is missed.
using System;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>Where a <see cref="ChatStream"/> is; see <see cref="ChatStream.StateChanged"/>.</summary>
    public enum ChatStreamState
    {
        /// <summary>The request is on its way; no metadata event yet (retries happen here).</summary>
        Connecting,
        /// <summary>The metadata event arrived and the reply is streaming.</summary>
        Streaming,
        /// <summary>The connection broke mid-reply; the client is reconnecting to the turn. Show it, e.g. "reconnecting…".</summary>
        Reconnecting,
        /// <summary>The reply ended with [DONE]; <see cref="ChatStream.Text"/> has it.</summary>
        Completed,
        /// <summary><see cref="ChatStream.Stop"/> ended the reply; <see cref="ChatStream.Text"/> has the text so far.</summary>
        Stopped,
        /// <summary>The reply failed; see <see cref="ChatStream.Failed"/>.</summary>
        Failed,
        /// <summary><see cref="ChatStream.Cancel"/> or the cancellation token ended the stream.</summary>
        Cancelled
    }

    /// <summary>A reply being streamed; see the file comment for threading and late subscription.</summary>
    public sealed class ChatStream
    {
        private readonly object gate = new object();
        private readonly SynchronizationContext context;
        private readonly CancellationTokenSource cancellation;
        private readonly List<string> deltas = new List<string>();
        private readonly TaskCompletionSource<ChatMetadata> metadataSource =
            new TaskCompletionSource<ChatMetadata>(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<string> conversationIdSource =
            new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource<string> textSource =
            new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        private ChatMetadata metadata;
        private string finalText;
        private Exception failure;
        private Action<ChatMetadata> metadataReceived;
        private Action<string> deltaReceived;
        private Action<string> completed;
        private Action<Exception> failed;
        private Action<ChatStreamState> stateChanged;
        private ChatStreamState state = ChatStreamState.Connecting;
        private Func<Task> stopper;

        internal ChatStream(SynchronizationContext context, CancellationTokenSource cancellation)
        {
            this.context = context;
            this.cancellation = cancellation;
            // A caller that only awaits Text must not see an unobserved exception from the other tasks.
            ObserveFailures(Metadata);
            ObserveFailures(ConversationId);
            ObserveFailures(Text);
        }

        /// <summary>Completes on the metadata event, the first event of the stream.</summary>
        public Task<ChatMetadata> Metadata { get { return metadataSource.Task; } }

        /// <summary>The conversation id, from the metadata event.</summary>
        public Task<string> ConversationId { get { return conversationIdSource.Task; } }

        /// <summary>The whole reply, once the stream ended with [DONE].</summary>
        public Task<string> Text { get { return textSource.Task; } }

        /// <summary>The metadata, if it has arrived.</summary>
        public ChatMetadata CurrentMetadata { get { lock (gate) return metadata; } }

        /// <summary>Where the stream is now (as of the last <see cref="StateChanged"/> raised).</summary>
        public ChatStreamState State { get { lock (gate) return state; } }

        /// <summary>The text received so far.</summary>
        public string PartialText { get { lock (gate) return string.Concat(deltas.ToArray()); } }

        /// <summary>Raised once, when the metadata event arrives.</summary>
        public event Action<ChatMetadata> MetadataReceived
        {
            add
            {
                lock (gate)
                {
                    metadataReceived += value;
                    if (metadata != null) value(metadata);
                }
            }
            remove { lock (gate) metadataReceived -= value; }
        }

        /// <summary>Raised once with the conversation id, as soon as the metadata event arrives.</summary>
        public event Action<string> ConversationIdReceived
        {
            add { MetadataReceived += Forwarder(value); }
            remove { MetadataReceived -= Forwarder(value); }
        }

        /// <summary>Raised for each piece of the reply.</summary>
        public event Action<string> DeltaReceived
        {
            add
            {
                lock (gate)
                {
                    deltaReceived += value;
                    foreach (string delta in deltas) value(delta);
                }
            }
            remove { lock (gate) deltaReceived -= value; }
        }

        /// <summary>Raised with the whole reply when the stream ends normally.</summary>
        public event Action<string> Completed
        {
            add
            {
                lock (gate)
                {
                    completed += value;
                    if (finalText != null) value(finalText);
                }
            }
            remove { lock (gate) completed -= value; }
        }

        /// <summary>
        /// Raised when the reply fails: a <see cref="ConvokeException"/>, or an
        /// <see cref="OperationCanceledException"/> after cancellation.
        /// </summary>
        public event Action<Exception> Failed
        {
            add
            {
                lock (gate)
                {
                    failed += value;
                    if (failure != null) value(failure);
                }
            }
            remove { lock (gate) failed -= value; }
        }

        /// <summary>
        /// Raised when <see cref="State"/> changes, e.g. to Reconnecting while a
        /// broken connection is resumed and back to Streaming. A late subscriber
        /// is called at once with the current state.
        /// </summary>
        public event Action<ChatStreamState> StateChanged
        {
            add
            {
                lock (gate)
                {
                    stateChanged += value;
                    value(state);
                }
            }
            remove { lock (gate) stateChanged -= value; }
        }

        /// <summary>
        /// Stops the reply for good: asks the server to end the turn (it keeps
        /// the partial reply with status "cancelled") and ends this stream
        /// quietly: <see cref="Completed"/> and <see cref="Text"/> get the text
        /// so far and the state becomes Stopped. Before the metadata event there
        /// is no turn to stop: the request is cancelled as by <see cref="Cancel"/>.
        /// The task completes once the server answered; it fails (the stream has
        /// ended anyway) when the server could not be told.
        /// </summary>
        public Task Stop()
        {
            Func<Task> stop;
            lock (gate)
            {
                // A reply that already ended has nothing left to stop.
                if (IsFinished) return Task.FromResult(true);
                stop = stopper;
            }
            if (stop != null) return stop();
            Cancel();
            return Task.FromResult(true);
        }

        /// <summary>
        /// Disconnects. Before the metadata event nothing is created; after it
        /// the server keeps the turn going for a short grace window (a client
        /// may resume it), then keeps the partial reply. Pending tasks become
        /// cancelled. To end the turn on the server at once, use <see cref="Stop"/>.
        /// </summary>
        public void Cancel()
        {
            try
            {
                cancellation.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The stream has already finished.
            }
        }

        internal void SetStopper(Func<Task> stop)
        {
            lock (gate) stopper = stop;
        }

        internal void OnStateChanged(ChatStreamState next)
        {
            Dispatch(() =>
            {
                if (IsFinished) return;
                SetState(next);
            });
        }

        internal void OnMetadata(ChatMetadata received)
        {
            Dispatch(() =>
            {
                if (metadata != null || IsFinished) return;
                metadata = received;
                SetState(ChatStreamState.Streaming);
                Invoke(metadataReceived, received);
                metadataSource.TrySetResult(received);
                conversationIdSource.TrySetResult(received.ConversationId);
            });
        }

        internal void OnDelta(string delta)
        {
            Dispatch(() =>
            {
                if (IsFinished) return;
                deltas.Add(delta);
                Invoke(deltaReceived, delta);
            });
        }

        internal void OnCompleted()
        {
            Dispatch(() =>
            {
                if (IsFinished) return;
                finalText = string.Concat(deltas.ToArray());
                SetState(ChatStreamState.Completed);
                Invoke(completed, finalText);
                textSource.TrySetResult(finalText);
            });
        }

        /// <summary>Ends the stream quietly after <see cref="Stop"/>: completed with the text so far.</summary>
        internal void OnStopped()
        {
            Dispatch(() =>
            {
                if (IsFinished) return;
                finalText = string.Concat(deltas.ToArray());
                SetState(ChatStreamState.Stopped);
                Invoke(completed, finalText);
                textSource.TrySetResult(finalText);
            });
        }

        internal void OnFailed(Exception error)
        {
            Dispatch(() =>
            {
                if (IsFinished) return;
                failure = error;
                SetState(error is OperationCanceledException ? ChatStreamState.Cancelled : ChatStreamState.Failed);
                Invoke(failed, error);
                if (error is OperationCanceledException)
                {
                    metadataSource.TrySetCanceled();
                    conversationIdSource.TrySetCanceled();
                    textSource.TrySetCanceled();
                }
                else
                {
                    metadataSource.TrySetException(error);
                    conversationIdSource.TrySetException(error);
                    textSource.TrySetException(error);
                }
            });
        }

        private bool IsFinished { get { return finalText != null || failure != null; } }

        // Called under the gate, on the caller's context, like every event.
        private void SetState(ChatStreamState next)
        {
            if (state == next) return;
            state = next;
            Invoke(stateChanged, next);
        }

        // Handlers run before the matching task completes, so code awaiting a
        // task sees every handler's effect. A throwing handler must not break
        // the stream: its exception is rethrown on the caller's context (Unity
        // logs it) or traced when there is none.
        private void Invoke<T>(Action<T> handlers, T value)
        {
            if (handlers == null) return;
            foreach (Delegate handler in handlers.GetInvocationList())
            {
                try
                {
                    ((Action<T>)handler)(value);
                }
                catch (Exception error)
                {
                    if (context != null)
                        context.Post(_ => { throw new ConvokeException("A ChatStream event handler threw", error); }, null);
                    else
                        System.Diagnostics.Trace.TraceError("A ChatStream event handler threw: " + error);
                }
            }
        }

        private void Dispatch(Action action)
        {
            // State changes and handler calls happen together under the gate, on
            // the caller's context, so a late subscriber's replay and the live
            // events never overlap or reorder.
            if (context == null)
            {
                lock (gate) action();
            }
            else
            {
                context.Post(_ => { lock (gate) action(); }, null);
            }
        }

        private readonly Dictionary<Action<string>, Action<ChatMetadata>> forwarders =
            new Dictionary<Action<string>, Action<ChatMetadata>>();

        private Action<ChatMetadata> Forwarder(Action<string> handler)
        {
            lock (gate)
            {
                Action<ChatMetadata> forwarder;
                if (!forwarders.TryGetValue(handler, out forwarder))
                {
                    forwarder = received => handler(received.ConversationId);
                    forwarders[handler] = forwarder;
                }
                return forwarder;
            }
        }

        private static void ObserveFailures(Task task)
        {
            task.ContinueWith(
                finished => { Exception ignored = finished.Exception; },
                CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }
    }
}
