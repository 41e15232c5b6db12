// The transport on System.Net.Http.HttpClient, for Mono, .NET and Unity's
// .NET Standard 2.1 profile. It must ask for ResponseHeadersRead and read the
// content stream: with the default completion option (and with PostAsync)
// HttpClient buffers the whole response, and the conversation id would only
// arrive with the last word.
//
// Cancelling must close the connection at once, or the server keeps the
// model generating: both SocketsHttpHandler and Mono's default handler try to
// drain an unfinished response for up to 2 seconds before closing (measured
// under Mono 6.8: the server saw the close 2.0 s after the client disposed).
// The default constructor therefore uses SocketsHttpHandler with draining
// off where the runtime has it, and falls back to HttpClientHandler.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Http;
using System.Reflection;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>Streams responses with <see cref="HttpClient"/>; reuse one per application.</summary>
    public sealed class HttpClientTransport : IChatTransport, IDisposable
    {
        /// <summary>The User-Agent sent when the HttpClient has none of its own.</summary>
        public const string UserAgent = "Convoke-Unity/" + ConvokeClient.Version;

        private readonly HttpClient client;
        private readonly bool ownsClient;

        /// <summary>
        /// Uses a new HttpClient without a timeout (streams are long-lived; use
        /// cancellation) on a handler that closes cancelled streams at once.
        /// </summary>
        public HttpClientTransport() : this(new HttpClient(CreateHandler()) { Timeout = Timeout.InfiniteTimeSpan }, true) { }

        /// <summary>
        /// Uses the given HttpClient (its Timeout applies to whole streams). For
        /// prompt cancellation give it a SocketsHttpHandler with MaxResponseDrainSize = 0.
        /// </summary>
        public HttpClientTransport(HttpClient client) : this(client, false) { }

        private HttpClientTransport(HttpClient client, bool ownsClient)
        {
            this.client = client;
            this.ownsClient = ownsClient;
        }

        public async Task SendAsync(TransportRequest request, ITransportReceiver receiver, CancellationToken cancellationToken)
        {
            using (HttpRequestMessage message = new HttpRequestMessage(new HttpMethod(request.Method), request.Url))
            {
                if (request.Headers != null)
                {
                    foreach (KeyValuePair<string, string> header in request.Headers)
                        message.Headers.TryAddWithoutValidation(header.Key, header.Value);
                }
                if (client.DefaultRequestHeaders.UserAgent.Count == 0 && !message.Headers.Contains("User-Agent"))
                    message.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
                if (request.JsonBody != null)
                    message.Content = new StringContent(request.JsonBody, Encoding.UTF8, "application/json");
                using (HttpResponseMessage response = await client
                    .SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken)
                    .ConfigureAwait(false))
                {
                    string contentType = response.Content.Headers.ContentType != null
                        ? response.Content.Headers.ContentType.ToString()
                        : "";
                    string retryAfter = null;
                    IEnumerable<string> values;
                    if (response.Headers.TryGetValues("Retry-After", out values))
                        foreach (string value in values) retryAfter = value;
                    receiver.OnResponse((int)response.StatusCode, contentType, retryAfter);
                    using (Stream body = await response.Content.ReadAsStreamAsync().ConfigureAwait(false))
                    using (cancellationToken.Register(() => body.Dispose()))
                    {
                        byte[] buffer = new byte[8192];
                        while (true)
                        {
                            int read;
                            try
                            {
                                read = await body.ReadAsync(buffer, 0, buffer.Length, cancellationToken).ConfigureAwait(false);
                            }
                            catch (Exception) when (cancellationToken.IsCancellationRequested)
                            {
                                // Disposing the stream is how a blocked read is interrupted on Mono.
                                throw new OperationCanceledException(cancellationToken);
                            }
                            if (read == 0) return;
                            if (!receiver.OnData(buffer, 0, read)) return;
                        }
                    }
                }
            }
        }

        /// <summary>
        /// SocketsHttpHandler with MaxResponseDrainSize = 0 when the runtime has
        /// it (.NET Core 2.1+, Mono 6), else HttpClientHandler. Found by
        /// reflection because .NET Standard 2.1 does not declare it.
        /// </summary>
        public static HttpMessageHandler CreateHandler()
        {
            Type sockets = typeof(HttpClientHandler).Assembly.GetType("System.Net.Http.SocketsHttpHandler");
            if (sockets != null)
            {
                try
                {
                    HttpMessageHandler handler = (HttpMessageHandler)Activator.CreateInstance(sockets);
                    PropertyInfo drain = sockets.GetProperty("MaxResponseDrainSize");
                    if (drain != null) drain.SetValue(handler, 0, null);
                    return handler;
                }
                catch (Exception)
                {
                    // Not supported on this platform (e.g. some AOT targets): use the default handler.
                }
            }
            return new HttpClientHandler();
        }

        public void Dispose()
        {
            if (ownsClient) client.Dispose();
        }
    }
}
