// The transport on UnityWebRequest with a DownloadHandlerScript, for platforms
// where Unity's own networking is preferred (WebGL has no HttpClient sockets;
// some consoles and mobile setups route through it). Compiled only inside
// Unity. Use it from the main thread, as UnityWebRequest requires; cancel from
// the main thread too.
#if UNITY_5_3_OR_NEWER
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using UnityEngine.Networking;

namespace Convoke
{
    /// <summary>Streams responses with UnityWebRequest; pass it as <see cref="ConvokeClientOptions.Transport"/>.</summary>
    public sealed class UnityWebRequestTransport : IChatTransport
    {
        public Task SendAsync(TransportRequest request, ITransportReceiver receiver, CancellationToken cancellationToken)
        {
            TaskCompletionSource<bool> completion = new TaskCompletionSource<bool>();
            if (cancellationToken.IsCancellationRequested)
            {
                completion.SetCanceled();
                return completion.Task;
            }
            UnityWebRequest web = new UnityWebRequest(request.Url, request.Method);
            StreamingDownloadHandler handler = new StreamingDownloadHandler(web, receiver);
            web.downloadHandler = handler;
            if (request.JsonBody != null)
            {
                web.uploadHandler = new UploadHandlerRaw(Encoding.UTF8.GetBytes(request.JsonBody));
                web.SetRequestHeader("Content-Type", "application/json");
            }
            if (request.Headers != null)
            {
                foreach (KeyValuePair<string, string> header in request.Headers) web.SetRequestHeader(header.Key, header.Value);
            }
            CancellationTokenRegistration registration = cancellationToken.Register(() => web.Abort());
            UnityWebRequestAsyncOperation operation = web.SendWebRequest();
            operation.completed += _ =>
            {
                registration.Dispose();
                try
                {
                    if (cancellationToken.IsCancellationRequested)
                    {
                        completion.TrySetCanceled();
                    }
                    else if (handler.Failure != null)
                    {
                        completion.TrySetException(handler.Failure);
                    }
                    else if (handler.Stopped)
                    {
                        completion.TrySetResult(true);
                    }
                    else if (IsConnectionError(web))
                    {
                        completion.TrySetException(new IOException(web.error ?? "Connection error"));
                    }
                    else
                    {
                        // A body-less response (e.g. 204) never called ReceiveData.
                        handler.EnsureResponse();
                        completion.TrySetResult(true);
                    }
                }
                catch (Exception error)
                {
                    completion.TrySetException(error);
                }
                finally
                {
                    web.Dispose();
                }
            };
            return completion.Task;
        }

        private static bool IsConnectionError(UnityWebRequest web)
        {
#if UNITY_2020_2_OR_NEWER
            return web.result == UnityWebRequest.Result.ConnectionError;
#else
            return web.isNetworkError;
#endif
        }

        /// <summary>Hands each received piece to the receiver as it arrives.</summary>
        private sealed class StreamingDownloadHandler : DownloadHandlerScript
        {
            private readonly UnityWebRequest web;
            private readonly ITransportReceiver receiver;
            private bool started;

            public StreamingDownloadHandler(UnityWebRequest web, ITransportReceiver receiver)
                : base(new byte[8192])
            {
                this.web = web;
                this.receiver = receiver;
            }

            /// <summary>True when the receiver asked to stop (after [DONE]).</summary>
            public bool Stopped { get; private set; }

            /// <summary>An exception the receiver threw (a protocol error), reported on completion.</summary>
            public Exception Failure { get; private set; }

            public void EnsureResponse()
            {
                if (started) return;
                started = true;
                receiver.OnResponse(
                    (int)web.responseCode,
                    web.GetResponseHeader("Content-Type") ?? "",
                    web.GetResponseHeader("Retry-After"));
            }

            protected override bool ReceiveData(byte[] data, int dataLength)
            {
                if (data == null || dataLength == 0) return true;
                try
                {
                    EnsureResponse();
                    if (receiver.OnData(data, 0, dataLength)) return true;
                    Stopped = true;
                    return false;
                }
                catch (Exception error)
                {
                    Failure = error;
                    return false;
                }
            }
        }
    }
}
#endif
