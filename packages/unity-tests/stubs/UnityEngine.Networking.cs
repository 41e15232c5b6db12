// A stub of the UnityEngine / UnityEngine.Networking members that
// UnityWebRequestTransport uses, so the transport compiles under Mono and its
// streaming runs against a real server. Signatures follow Unity's reference
// source (UnityCsReference, Modules/UnityWebRequest: UnityWebRequest.bindings.cs,
// DownloadHandler.bindings.cs, UploadHandler.bindings.cs, Unity 2021.3 to 6).
//
// Imitated, because the transport depends on it:
// - The request really goes out (HttpClient on a worker thread, as Unity's
//   native backend works off the main thread) with the method upper-cased,
//   the headers set, and the upload handler's bytes as the body.
// - responseCode and the response headers (GetResponseHeaders: a dictionary
//   with case-insensitive names, null when there are none) are known before
//   the first ReceiveData.
// - ReceiveData, CompleteContent and the completed event run on the main
//   thread (UnityStub.MainThread), in that order. Bytes that arrive while the
//   main thread is busy are combined into one call, as Unity combines the
//   data of one frame; a preallocated buffer is reused for every call (never
//   zeroed) and a larger batch is split into calls of at most its length.
//   ReceiveData returning false aborts the request (DataProcessingError).
// - result: Success, ProtocolError for status >= 400 (the body is still
//   delivered), ConnectionError when the server cannot be reached, the
//   connection breaks, or after Abort() ("Request aborted"); error is
//   "HTTP/1.1 <code> <reason>" for ProtocolError as in Unity.
// - Abort() and Dispose() may be called from any thread (Unity marks Abort
//   and Release thread-safe); Abort closes the connection at once. Other
//   members throw off the main thread, as Unity's do (Unity throws a
//   UnityException; the stub an InvalidOperationException). Headers and
//   handlers cannot change once sent; a second SendWebRequest throws.
// - completed, subscribed after the operation finished, runs at once.
//
// Not imitated: HTTP/2, redirects' limit, timeouts, certificates, cookies,
// the headers Unity refuses to set (Host, Content-Length, ...), Unity's
// default headers (User-Agent, X-Unity-Version), the WebGL implementation,
// and a real frame rate: here a "frame" is one pass of the main-thread queue,
// so data is delivered as soon as the main thread is free.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Http;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;
using UnityStub;

namespace UnityEngine
{
    /// <summary>Unity's AsyncOperation: <c>completed</c> is raised on the main thread.</summary>
    public class AsyncOperation
    {
        private Action<AsyncOperation> handlers;
        private bool done;

        public bool isDone
        {
            get
            {
                MainThread.Require("AsyncOperation.isDone");
                return done;
            }
        }

        public event Action<AsyncOperation> completed
        {
            add
            {
                MainThread.Require("AsyncOperation.completed");
                if (done) value(this);
                else handlers += value;
            }
            remove
            {
                MainThread.Require("AsyncOperation.completed");
                handlers -= value;
            }
        }

        internal void Complete()
        {
            done = true;
            Action<AsyncOperation> toCall = handlers;
            handlers = null;
            if (toCall != null) toCall(this);
        }
    }
}

namespace UnityEngine.Networking
{
    public class UnityWebRequestAsyncOperation : AsyncOperation
    {
        public UnityWebRequest webRequest { get; internal set; }
    }

    public class UnityWebRequest : IDisposable
    {
        public enum Result
        {
            InProgress = 0,
            Success = 1,
            ConnectionError = 2,
            ProtocolError = 3,
            DataProcessingError = 4,
        }

        private readonly object gate = new object();
        private readonly string url;
        private readonly string method;
        private readonly List<KeyValuePair<string, string>> requestHeaders = new List<KeyValuePair<string, string>>();
        private readonly CancellationTokenSource abort = new CancellationTokenSource();
        private readonly MemoryStream pending = new MemoryStream();
        private DownloadHandler download;
        private UploadHandler upload;
        private UnityWebRequestAsyncOperation operation;
        private bool sent;
        private bool transferEnded;
        private bool aborted;
        private bool rejected;
        private bool deliveryQueued;
        private bool disposed;
        private long status;
        private string reason;
        private Dictionary<string, string> responseHeaders;
        private Result outcome = Result.InProgress;
        private string failure;

        public UnityWebRequest(string url, string method)
        {
            MainThread.Require("UnityWebRequest.Create");
            if (string.IsNullOrEmpty(method))
                throw new ArgumentException("Cannot set a UnityWebRequest's method to an empty or null string");
            this.url = url;
            this.method = method.ToUpperInvariant();
            disposeDownloadHandlerOnDispose = true;
            disposeUploadHandlerOnDispose = true;
        }

        public bool disposeDownloadHandlerOnDispose { get; set; }

        public bool disposeUploadHandlerOnDispose { get; set; }

        public DownloadHandler downloadHandler
        {
            get { return download; }
            set
            {
                RequireModifiable("the download handler");
                download = value;
            }
        }

        public UploadHandler uploadHandler
        {
            get { return upload; }
            set
            {
                RequireModifiable("the upload handler");
                upload = value;
            }
        }

        public void SetRequestHeader(string name, string value)
        {
            if (string.IsNullOrEmpty(name)) throw new ArgumentException("Cannot set a Request Header with a null or empty name");
            if (value == null) throw new ArgumentException("Cannot set a Request header with a null");
            RequireModifiable("its request headers");
            requestHeaders.RemoveAll(header => string.Equals(header.Key, name, StringComparison.OrdinalIgnoreCase));
            requestHeaders.Add(new KeyValuePair<string, string>(name, value));
        }

        public UnityWebRequestAsyncOperation SendWebRequest()
        {
            MainThread.Require("UnityWebRequest.SendWebRequest");
            RequireAlive();
            if (sent) throw new InvalidOperationException("UnityWebRequest has already been sent; cannot begin request");
            sent = true;
            operation = new UnityWebRequestAsyncOperation { webRequest = this };
            HttpRequestMessage message = BuildMessage();
            Task.Run(() => TransferAsync(message));
            return operation;
        }

        public void Abort()
        {
            lock (gate)
            {
                if (!sent || transferEnded || aborted) return;
                aborted = true;
            }
            abort.Cancel();
        }

        public long responseCode
        {
            get
            {
                MainThread.Require("UnityWebRequest.responseCode");
                lock (gate) return status;
            }
        }

        /// <summary>The response headers, with case-insensitive names as in Unity; null before any.</summary>
        public Dictionary<string, string> GetResponseHeaders()
        {
            MainThread.Require("UnityWebRequest.GetResponseHeaders");
            lock (gate)
            {
                return responseHeaders == null || responseHeaders.Count == 0
                    ? null
                    : new Dictionary<string, string>(responseHeaders, StringComparer.OrdinalIgnoreCase);
            }
        }

        public Result result
        {
            get
            {
                MainThread.Require("UnityWebRequest.result");
                return outcome;
            }
        }

        public bool isDone { get { return result != Result.InProgress; } }

        public string error
        {
            get
            {
                switch (result)
                {
                    case Result.InProgress:
                    case Result.Success:
                        return null;
                    case Result.ProtocolError:
                        return "HTTP/1.1 " + responseCode + " " + reason;
                    default:
                        return failure;
                }
            }
        }

        public void Dispose()
        {
            if (disposed) return;
            Abort();
            disposed = true;
            if (disposeDownloadHandlerOnDispose && download != null) download.Dispose();
            if (disposeUploadHandlerOnDispose && upload != null) upload.Dispose();
        }

        private void RequireModifiable(string what)
        {
            MainThread.Require("UnityWebRequest");
            RequireAlive();
            if (sent) throw new InvalidOperationException("UnityWebRequest has already been sent; cannot modify " + what);
        }

        private void RequireAlive()
        {
            if (disposed) throw new ObjectDisposedException("UnityWebRequest");
        }

        private HttpRequestMessage BuildMessage()
        {
            HttpRequestMessage message = new HttpRequestMessage(new HttpMethod(method), url);
            string contentType = null;
            foreach (KeyValuePair<string, string> header in requestHeaders)
            {
                if (string.Equals(header.Key, "Content-Type", StringComparison.OrdinalIgnoreCase)) contentType = header.Value;
                else message.Headers.TryAddWithoutValidation(header.Key, header.Value);
            }
            if (upload != null && upload.data != null)
            {
                message.Content = new ByteArrayContent(upload.data);
                message.Content.Headers.TryAddWithoutValidation("Content-Type", contentType ?? upload.contentType);
            }
            return message;
        }

        // Worker thread: the network side, like Unity's native backend.
        private async Task TransferAsync(HttpRequestMessage message)
        {
            HttpClient client = new HttpClient(PromptlyClosingHandler()) { Timeout = Timeout.InfiniteTimeSpan };
            bool responded = false;
            try
            {
                using (message)
                using (HttpResponseMessage response = await client
                    .SendAsync(message, HttpCompletionOption.ResponseHeadersRead, abort.Token)
                    .ConfigureAwait(false))
                {
                    Dictionary<string, string> headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                    foreach (KeyValuePair<string, IEnumerable<string>> header in response.Headers)
                        headers[header.Key] = string.Join(", ", header.Value);
                    foreach (KeyValuePair<string, IEnumerable<string>> header in response.Content.Headers)
                        headers[header.Key] = string.Join(", ", header.Value);
                    lock (gate)
                    {
                        status = (long)response.StatusCode;
                        reason = response.ReasonPhrase;
                        responseHeaders = headers;
                    }
                    responded = true;
                    long? length = response.Content.Headers.ContentLength;
                    if (length != null) MainThread.Post(() => { if (download != null) download.OnContentLength((ulong)length.Value); });
                    using (Stream body = await response.Content.ReadAsStreamAsync().ConfigureAwait(false))
                    using (abort.Token.Register(body.Dispose))
                    {
                        byte[] buffer = new byte[16384];
                        while (true)
                        {
                            int read = await body.ReadAsync(buffer, 0, buffer.Length, abort.Token).ConfigureAwait(false);
                            if (read == 0) break;
                            Queue(buffer, read);
                        }
                    }
                }
                End(status >= 400 ? Result.ProtocolError : Result.Success, null);
            }
            catch (Exception error)
            {
                End(Result.ConnectionError, responded ? "Failed to receive data: " + error.Message : "Cannot connect to destination host");
            }
            finally
            {
                client.Dispose();
            }
        }

        private void Queue(byte[] buffer, int count)
        {
            lock (gate)
            {
                pending.Write(buffer, 0, count);
                if (deliveryQueued) return;
                deliveryQueued = true;
            }
            MainThread.Post(Deliver);
        }

        // Main thread: one "frame" hands everything that arrived since the last one.
        private void Deliver()
        {
            byte[] bytes;
            lock (gate)
            {
                deliveryQueued = false;
                bytes = pending.ToArray();
                pending.SetLength(0);
                if (aborted || rejected || bytes.Length == 0) return;
            }
            if (download == null || download.Deliver(bytes)) return;
            lock (gate) rejected = true;
            abort.Cancel();
        }

        private void End(Result ended, string error)
        {
            lock (gate)
            {
                transferEnded = true;
                if (rejected)
                {
                    ended = Result.DataProcessingError;
                    error = "Data Processing Error, see Download Handler error";
                }
                else if (aborted)
                {
                    ended = Result.ConnectionError;
                    error = "Request aborted";
                }
            }
            MainThread.Post(() =>
            {
                Deliver();
                if ((ended == Result.Success || ended == Result.ProtocolError) && download != null) download.OnComplete();
                failure = error;
                outcome = ended;
                operation.Complete();
            });
        }

        // As HttpClientTransport.CreateHandler: close an unfinished response at once rather than drain it.
        private static HttpMessageHandler PromptlyClosingHandler()
        {
            Type sockets = typeof(HttpClientHandler).Assembly.GetType("System.Net.Http.SocketsHttpHandler");
            if (sockets == null) return new HttpClientHandler();
            HttpMessageHandler handler = (HttpMessageHandler)Activator.CreateInstance(sockets);
            PropertyInfo drain = sockets.GetProperty("MaxResponseDrainSize");
            if (drain != null) drain.SetValue(handler, 0, null);
            return handler;
        }
    }

    public class DownloadHandler : IDisposable
    {
        internal DownloadHandler()
        {
            MainThread.Require("DownloadHandler.Create");
        }

        public void Dispose() { }

        /// <summary>Called with each piece of the body; false aborts the request.</summary>
        protected virtual bool ReceiveData(byte[] data, int dataLength) { return true; }

        /// <summary>Called once the response headers carry a Content-Length.</summary>
        protected virtual void ReceiveContentLengthHeader(ulong contentLength) { }

        /// <summary>Called after the last ReceiveData of a response that arrived whole.</summary>
        protected virtual void CompleteContent() { }

        internal virtual bool Deliver(byte[] bytes)
        {
            return ReceiveData(bytes, bytes.Length);
        }

        internal void OnContentLength(ulong contentLength)
        {
            ReceiveContentLengthHeader(contentLength);
        }

        internal void OnComplete()
        {
            CompleteContent();
        }
    }

    public class DownloadHandlerScript : DownloadHandler
    {
        private readonly byte[] preallocated;

        public DownloadHandlerScript() { }

        public DownloadHandlerScript(byte[] preallocatedBuffer)
        {
            if (preallocatedBuffer == null || preallocatedBuffer.Length < 1)
                throw new ArgumentException("Cannot create a preallocated-buffer DownloadHandlerScript backed by a null or zero-length array");
            preallocated = preallocatedBuffer;
        }

        internal override bool Deliver(byte[] bytes)
        {
            if (preallocated == null) return ReceiveData(bytes, bytes.Length);
            for (int offset = 0; offset < bytes.Length; offset += preallocated.Length)
            {
                int count = Math.Min(preallocated.Length, bytes.Length - offset);
                Array.Copy(bytes, offset, preallocated, 0, count);
                if (!ReceiveData(preallocated, count)) return false;
            }
            return true;
        }
    }

    public class UploadHandler : IDisposable
    {
        internal UploadHandler(byte[] bytes)
        {
            MainThread.Require("UploadHandler.Create");
            data = bytes;
            contentType = "application/octet-stream";
        }

        /// <summary>The bytes to send.</summary>
        public byte[] data { get; private set; }

        /// <summary>The Content-Type sent when the request sets none.</summary>
        public string contentType { get; set; }

        public void Dispose() { }
    }

    public sealed class UploadHandlerRaw : UploadHandler
    {
        public UploadHandlerRaw(byte[] data) : base(data) { }
    }
}
