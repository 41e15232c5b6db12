// The streaming half of UnityWebRequestTransport, free of Unity types so it
// compiles and is tested everywhere. A download that pushes the body through
// callbacks (a DownloadHandlerScript's ReceiveData, on the main thread) and
// then reports how it ended becomes ITransportReceiver calls and the task
// IChatTransport.SendAsync returns, under HttpClientTransport's contract:
// OnResponse once, before any body; OnData per piece, in order; the task
// cancelled when the token was, failed with the receiver's own exception (a
// protocol error), failed with an IOException when the connection failed or
// broke (the client retries those before the first event), else completed.
using System;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>Relays one callback-driven download to a receiver; use each instance for one request.</summary>
    internal sealed class DownloadRelay
    {
        private readonly ITransportReceiver receiver;
        private readonly Func<long> status;
        private readonly Func<string, string> header;
        private readonly CancellationToken cancellationToken;
        private readonly TaskCompletionSource<bool> completion = new TaskCompletionSource<bool>();
        private bool started;
        private bool stopped;
        private Exception failure;

        /// <param name="receiver">Gets the response.</param>
        /// <param name="status">Reads the response status once it is known.</param>
        /// <param name="header">Reads a response header by name (null when absent).</param>
        /// <param name="cancellationToken">The token of the request; when cancelled, the task is cancelled.</param>
        public DownloadRelay(
            ITransportReceiver receiver,
            Func<long> status,
            Func<string, string> header,
            CancellationToken cancellationToken)
        {
            this.receiver = receiver;
            this.status = status;
            this.header = header;
            this.cancellationToken = cancellationToken;
        }

        /// <summary>Settles when <see cref="Finish"/> is called.</summary>
        public Task Task { get { return completion.Task; } }

        /// <summary>
        /// Hands one piece of the body to the receiver. False means "stop the
        /// download": the receiver has what it wants, or it threw (kept for
        /// <see cref="Finish"/>).
        /// </summary>
        public bool Receive(byte[] data, int length)
        {
            if (stopped || failure != null) return false;
            if (data == null || length <= 0) return true;
            try
            {
                EnsureResponse();
                if (receiver.OnData(data, 0, length)) return true;
                stopped = true;
            }
            catch (Exception error)
            {
                failure = error;
            }
            return false;
        }

        /// <summary>
        /// Settles the task once the download has ended. <paramref name="release"/>
        /// runs after the last read of the status and headers and before the
        /// task settles, so code awaiting the task never sees a live request.
        /// </summary>
        /// <param name="connectionError">True when no complete response arrived (refused, broken, aborted).</param>
        /// <param name="error">What went wrong, for the IOException.</param>
        /// <param name="release">Frees the request (e.g. disposes it).</param>
        public void Finish(bool connectionError, string error, Action release)
        {
            Exception outcome = failure;
            bool cancelled = false;
            if (outcome == null && !stopped)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    cancelled = true;
                }
                else if (connectionError)
                {
                    outcome = new IOException(string.IsNullOrEmpty(error) ? "The connection failed" : error);
                }
                else
                {
                    try
                    {
                        // A body-less response (204, or an empty error body) never called Receive.
                        EnsureResponse();
                    }
                    catch (Exception receiverError)
                    {
                        outcome = receiverError;
                    }
                }
            }
            release();
            if (cancelled) completion.TrySetCanceled();
            else if (outcome != null) completion.TrySetException(outcome);
            else completion.TrySetResult(true);
        }

        private void EnsureResponse()
        {
            if (started) return;
            started = true;
            receiver.OnResponse((int)status(), header("Content-Type") ?? "", header("Retry-After"));
        }
    }
}
