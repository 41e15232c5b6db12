// The transport on UnityWebRequest with a DownloadHandlerScript, for when
// Unity's own networking is preferred (some consoles and mobile setups route
// through it; WebGL has no sockets for HttpClient, but see the README: do not
// expect WebGL builds to stream with it). Compiled only inside Unity; the streaming
// logic lives in DownloadRelay, tested without Unity.
//
// Unity runs ReceiveData and the operation's completed event on the main
// thread, and most UnityWebRequest members may only be called there: call
// SendAsync on the main thread (ConvokeClient does when Chat is called from a
// MonoBehaviour). Cancelling may happen on any thread: it calls Abort, which
// Unity marks thread-safe.
#if UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using UnityEngine.Networking;

namespace Convoke
{
    /// <summary>Streams responses with UnityWebRequest; pass it as <see cref="ConvokeClientOptions.Transport"/>.</summary>
    public sealed class UnityWebRequestTransport : IChatTransport
    {
        /// <summary>Sends any method, with the JSON body when there is one. Call it on the main thread.</summary>
        public Task SendAsync(TransportRequest request, ITransportReceiver receiver, CancellationToken cancellationToken)
        {
            TaskCompletionSource<bool> early = new TaskCompletionSource<bool>();
            if (cancellationToken.IsCancellationRequested)
            {
                early.SetCanceled();
                return early.Task;
            }
            UnityWebRequest web = null;
            try
            {
                web = new UnityWebRequest(request.Url, request.Method);
                UnityWebRequest sent = web;
                DownloadRelay relay = new DownloadRelay(
                    receiver,
                    () => sent.responseCode,
                    name => ResponseHeader(sent, name),
                    cancellationToken);
                web.downloadHandler = new RelayingDownloadHandler(relay);
                if (request.JsonBody != null)
                {
                    web.uploadHandler = new UploadHandlerRaw(Encoding.UTF8.GetBytes(request.JsonBody));
                    web.SetRequestHeader("Content-Type", "application/json");
                }
                if (request.Headers != null)
                {
                    foreach (KeyValuePair<string, string> header in request.Headers) web.SetRequestHeader(header.Key, header.Value);
                }
                UnityWebRequestAsyncOperation operation = web.SendWebRequest();
                // Registered after sending, so an Abort never reaches a request that was not sent.
                CancellationTokenRegistration registration = cancellationToken.Register(sent.Abort);
                operation.completed += _ =>
                {
                    // Disposing the registration waits for a running Abort, so Dispose never races it.
                    registration.Dispose();
                    UnityWebRequest.Result result = sent.result;
                    bool connectionError = result != UnityWebRequest.Result.Success && result != UnityWebRequest.Result.ProtocolError;
                    relay.Finish(connectionError, connectionError ? sent.error : null, sent.Dispose);
                };
                return relay.Task;
            }
            catch (Exception error)
            {
                // E.g. a header Unity refuses, or http:// when the player settings allow only HTTPS.
                if (web != null) web.Dispose();
                early.SetException(error);
                return early.Task;
            }
        }

        private static string ResponseHeader(UnityWebRequest web, string name)
        {
            // GetResponseHeaders matches names case-insensitively (HTTP/2 sends them in lower case).
            Dictionary<string, string> headers = web.GetResponseHeaders();
            string value;
            return headers != null && headers.TryGetValue(name, out value) ? value : null;
        }

        /// <summary>Hands each piece to the relay as Unity delivers it (on the main thread).</summary>
        private sealed class RelayingDownloadHandler : DownloadHandlerScript
        {
            private readonly DownloadRelay relay;

            // A preallocated buffer: Unity reuses it for every call instead of allocating one per piece.
            public RelayingDownloadHandler(DownloadRelay relay) : base(new byte[8192])
            {
                this.relay = relay;
            }

            protected override bool ReceiveData(byte[] data, int dataLength)
            {
                return relay.Receive(data, dataLength);
            }
        }
    }
}
#endif
