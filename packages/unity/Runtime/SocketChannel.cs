// The WebSocket transport's one socket, shared by every turn of a client and
// multiplexed by request_id (docs/websocket.md). A request registers a
// listener under a fresh request_id and sends its frame; a reading loop hands
// each frame to the listener its request_id names, in order. The socket opens
// on the first request and stays open; when it closes or breaks, every
// listener is told (the turns then resume on a new socket, as an HTTP stream
// resumes on a new connection), and the next request opens a new one.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>Receives the frames of one request on a <see cref="SocketChannel"/>.</summary>
    internal interface ISocketListener
    {
        /// <summary>A frame that carries this listener's request_id; called from the reading loop, in order.</summary>
        void OnFrame(Dictionary<string, object> frame);

        /// <summary>The socket closed or broke while the listener was registered.</summary>
        void OnClosed(Exception reason);
    }

    /// <summary>Where and how to open a socket: the URL (with a ticket when headers cannot be set) and the upgrade's headers.</summary>
    internal sealed class SocketTarget
    {
        public Uri Uri;
        public IDictionary<string, string> Headers;
    }

    /// <summary>What opening a socket needs from the client.</summary>
    internal interface ISocketOpener
    {
        /// <summary>The target for a connection that can (or cannot) set headers.</summary>
        Task<SocketTarget> TargetAsync(bool canSetHeaders, CancellationToken cancellationToken);

        /// <summary>Why the upgrade failed, as the exception the HTTP transport would raise.</summary>
        Task<Exception> ExplainRefusalAsync(Exception failure);
    }

    /// <summary>One shared socket at a time, opened on demand; see the file comment.</summary>
    internal sealed class SocketChannel : IDisposable
    {
        private readonly object gate = new object();
        private readonly Func<IWebSocketConnection> factory;
        private readonly ISocketOpener opener;
        private readonly TimeSpan connectTimeout;
        private Link current;
        private long nextId;
        private bool disposed;

        public SocketChannel(Func<IWebSocketConnection> factory, ISocketOpener opener, TimeSpan connectTimeout)
        {
            this.factory = factory;
            this.opener = opener;
            this.connectTimeout = connectTimeout;
        }

        /// <summary>A request_id not used before on this channel, e.g. "chat-7".</summary>
        public string NextRequestId(string prefix)
        {
            return prefix + "-" + Interlocked.Increment(ref nextId);
        }

        /// <summary>
        /// Registers <paramref name="listener"/> under <paramref name="requestId"/>
        /// on the open socket (opening one when there is none) and sends
        /// <paramref name="frame"/>. Disposing the result unregisters it; frames
        /// for the request that arrive later are dropped. Fails with a
        /// <see cref="ConvokeException"/> when no socket could be opened or the
        /// frame could not be sent.
        /// </summary>
        public async Task<IDisposable> SendAsync(string requestId, ISocketListener listener, string frame, CancellationToken cancellationToken)
        {
            Link link = Current();
            await Cancellable(link.Ready, cancellationToken);
            Registration registration = link.Add(requestId, listener);
            try
            {
                await link.SendAsync(frame, cancellationToken);
            }
            catch (Exception error)
            {
                registration.Dispose();
                if (cancellationToken.IsCancellationRequested) throw new OperationCanceledException(cancellationToken);
                if (error is ConvokeException) throw;
                link.Abort(error);
                throw new ConvokeNetworkException("Sending a WebSocket frame failed: " + error.Message, error, null);
            }
            return registration;
        }

        public void Dispose()
        {
            Link link;
            lock (gate)
            {
                disposed = true;
                link = current;
                current = null;
            }
            if (link != null) link.Shutdown();
        }

        private Link Current()
        {
            Link link;
            lock (gate)
            {
                if (disposed) throw new ObjectDisposedException("ConvokeClient");
                if (current != null && !current.Closed) return current;
                link = new Link(this);
                current = link;
            }
            // Outside the lock: opening runs the factory and, for a ticket, an HTTP request.
            link.Start();
            return link;
        }

        private void Forget(Link link)
        {
            lock (gate)
            {
                if (current == link) current = null;
            }
        }

        private static async Task Cancellable(Task task, CancellationToken cancellationToken)
        {
            if (!task.IsCompleted && cancellationToken.CanBeCanceled)
            {
                TaskCompletionSource<bool> cancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                using (cancellationToken.Register(() => cancelled.TrySetResult(true)))
                {
                    if (await Task.WhenAny(task, cancelled.Task) != task) throw new OperationCanceledException(cancellationToken);
                }
            }
            await task;
        }

        /// <summary>One socket: its connection, its listeners and its reading loop.</summary>
        private sealed class Link
        {
            private readonly SocketChannel channel;
            private readonly object gate = new object();
            private readonly Dictionary<string, ISocketListener> listeners = new Dictionary<string, ISocketListener>();
            private readonly SemaphoreSlim sending = new SemaphoreSlim(1, 1);
            private readonly TaskCompletionSource<bool> ready =
                new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            private IWebSocketConnection connection;
            private bool closed;

            public Link(SocketChannel channel)
            {
                this.channel = channel;
                // Observed here: a caller that gave up waiting must not leave it unobserved.
                ready.Task.ContinueWith(task => { Exception ignored = task.Exception; }, TaskContinuationOptions.OnlyOnFaulted);
            }

            /// <summary>Completes once the socket is open; fails with the reason it could not open.</summary>
            public Task Ready { get { return ready.Task; } }

            public bool Closed { get { lock (gate) return closed; } }

            /// <summary>
            /// Opens the socket, then reads it until it ends. Runs on the caller's
            /// context up to the first await, so a ticket request starts there
            /// (UnityWebRequest needs the main thread).
            /// </summary>
            public async void Start()
            {
                IWebSocketConnection opened = null;
                try
                {
                    opened = channel.factory();
                    SocketTarget target = await channel.opener.TargetAsync(opened.CanSetHeaders, CancellationToken.None);
                    using (CancellationTokenSource timeout = new CancellationTokenSource(channel.connectTimeout))
                    {
                        try
                        {
                            await opened.ConnectAsync(target.Uri, target.Headers, timeout.Token);
                        }
                        catch (Exception error)
                        {
                            if (timeout.IsCancellationRequested)
                                throw new ConvokeNetworkException("The WebSocket did not open within " + channel.connectTimeout.TotalSeconds + " s", error, null);
                            throw await channel.opener.ExplainRefusalAsync(error);
                        }
                    }
                }
                catch (Exception error)
                {
                    if (opened != null) opened.Dispose();
                    lock (gate) closed = true;
                    channel.Forget(this);
                    ready.TrySetException(error is ConvokeException
                        ? error
                        : new ConvokeNetworkException("Could not open the WebSocket: " + error.Message, error, null));
                    return;
                }
                lock (gate)
                {
                    connection = opened;
                    if (closed)
                    {
                        // Disposed while opening.
                        opened.Dispose();
                        ready.TrySetException(new ObjectDisposedException("ConvokeClient"));
                        return;
                    }
                }
                ready.TrySetResult(true);
                // Started on the thread pool: a receive begun on the caller's context would post
                // the socket's own continuations back to it (Mono's ManagedWebSocket does).
                await Task.Run(() => ReadAsync(opened)).ConfigureAwait(false);
            }

            private async Task ReadAsync(IWebSocketConnection opened)
            {
                Exception reason;
                try
                {
                    while (true)
                    {
                        // Off the caller's context: each stream raises its events on its own.
                        string text = await opened.ReceiveAsync(CancellationToken.None).ConfigureAwait(false);
                        if (text == null)
                        {
                            reason = new ConvokeNetworkException("The server closed the WebSocket", null, null);
                            break;
                        }
                        Dispatch(text);
                    }
                }
                catch (Exception error)
                {
                    reason = error is ConvokeException ? error : new ConvokeNetworkException("The WebSocket broke: " + error.Message, error, null);
                }
                Close(reason);
            }

            private void Dispatch(string text)
            {
                Dictionary<string, object> frame;
                try
                {
                    frame = Json.Parse(text) as Dictionary<string, object>;
                }
                catch (FormatException)
                {
                    frame = null;
                }
                if (frame == null) throw new ConvokeProtocolException("The server sent a frame that is not a JSON object");
                string requestId = Json.GetString(frame, "request_id");
                if (requestId == null)
                {
                    // A pong, or an error about a frame the server could not attribute (none is sent without an id).
                    if (Json.GetString(frame, "type") == "error")
                        System.Diagnostics.Trace.TraceWarning("Convoke: the server refused a WebSocket frame: " + text);
                    return;
                }
                ISocketListener listener;
                lock (gate)
                {
                    if (!listeners.TryGetValue(requestId, out listener)) return;
                }
                listener.OnFrame(frame);
            }

            public Registration Add(string requestId, ISocketListener listener)
            {
                lock (gate)
                {
                    if (!closed)
                    {
                        listeners[requestId] = listener;
                        return new Registration(this, requestId);
                    }
                }
                listener.OnClosed(new ConvokeNetworkException("The WebSocket closed", null, null));
                return new Registration(null, requestId);
            }

            public void Remove(string requestId)
            {
                lock (gate) listeners.Remove(requestId);
            }

            public async Task SendAsync(string frame, CancellationToken cancellationToken)
            {
                await sending.WaitAsync(cancellationToken);
                try
                {
                    IWebSocketConnection open;
                    lock (gate) open = closed ? null : connection;
                    if (open == null) throw new ConvokeNetworkException("The WebSocket closed", null, null);
                    await open.SendAsync(frame, cancellationToken);
                }
                finally
                {
                    sending.Release();
                }
            }

            /// <summary>Ends the socket at once; its listeners hear <paramref name="reason"/>.</summary>
            public void Abort(Exception reason)
            {
                Close(reason);
            }

            /// <summary>Closes the socket politely (the client is being disposed).</summary>
            public async void Shutdown()
            {
                IWebSocketConnection open;
                lock (gate)
                {
                    if (closed) return;
                    open = connection;
                }
                if (open != null)
                {
                    try
                    {
                        await open.CloseAsync();
                    }
                    catch (Exception)
                    {
                        // Closed below regardless.
                    }
                }
                Close(new ObjectDisposedException("ConvokeClient"));
            }

            private void Close(Exception reason)
            {
                List<ISocketListener> left;
                IWebSocketConnection open;
                lock (gate)
                {
                    if (closed) return;
                    closed = true;
                    left = new List<ISocketListener>(listeners.Values);
                    listeners.Clear();
                    open = connection;
                }
                channel.Forget(this);
                if (open != null) open.Dispose();
                foreach (ISocketListener listener in left) listener.OnClosed(reason);
            }
        }

        /// <summary>A listener's place on a socket; disposing it removes the listener.</summary>
        private sealed class Registration : IDisposable
        {
            private readonly Link link;
            private readonly string requestId;

            public Registration(Link link, string requestId)
            {
                this.link = link;
                this.requestId = requestId;
            }

            public void Dispose()
            {
                if (link != null) link.Remove(requestId);
            }
        }
    }
}
