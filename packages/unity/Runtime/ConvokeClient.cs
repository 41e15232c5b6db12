// The Convoke client for Unity and .NET: Chat() streams a reply and raises
// the conversation id as soon as the first Server-Sent Event arrives. Parsing,
// retries and errors live here once; transports only move bytes.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>Options of <see cref="ConvokeClient"/>.</summary>
    public sealed class ConvokeClientOptions
    {
        public ConvokeClientOptions()
        {
            MaxRetries = 2;
            RetryBaseDelay = TimeSpan.FromMilliseconds(250);
            MaxRetryDelay = TimeSpan.FromSeconds(10);
        }

        /// <summary>The server, e.g. "https://chat.example.com".</summary>
        public string BaseUrl { get; set; }

        /// <summary>Sent as "Authorization: Bearer &lt;key&gt;" when set.</summary>
        public string ApiKey { get; set; }

        /// <summary>How requests travel (default: a new <see cref="HttpClientTransport"/>).</summary>
        public IChatTransport Transport { get; set; }

        /// <summary>
        /// Retries of network errors, 429 and 503, only before the metadata
        /// event (a started reply is never sent twice). Default 2; 0 disables.
        /// </summary>
        public int MaxRetries { get; set; }

        /// <summary>First backoff delay, doubled each retry (default 250 ms).</summary>
        public TimeSpan RetryBaseDelay { get; set; }

        /// <summary>Longest wait between attempts; a longer Retry-After is not waited for (default 10 s).</summary>
        public TimeSpan MaxRetryDelay { get; set; }
    }

    /// <summary>Talks to a Convoke server; create one and reuse it.</summary>
    public sealed class ConvokeClient : IDisposable
    {
        /// <summary>The chat path of the v0.3 API.</summary>
        public const string ChatPath = "/api/v0.3/chat";

        private readonly ConvokeClientOptions options;
        private readonly IChatTransport transport;
        private readonly bool ownsTransport;
        private readonly string baseUrl;
        private readonly Random jitter = new Random();

        /// <summary>A client for the server at <paramref name="baseUrl"/>, with default options.</summary>
        public ConvokeClient(string baseUrl) : this(new ConvokeClientOptions { BaseUrl = baseUrl }) { }

        public ConvokeClient(ConvokeClientOptions options)
        {
            if (options == null) throw new ArgumentNullException("options");
            if (string.IsNullOrEmpty(options.BaseUrl)) throw new ArgumentException("BaseUrl is required", "options");
            this.options = options;
            baseUrl = options.BaseUrl.TrimEnd('/');
            ownsTransport = options.Transport == null;
            transport = options.Transport ?? new HttpClientTransport();
        }

        /// <summary>
        /// Sends a message and streams the reply. Returns at once; subscribe to
        /// the stream's events or await its tasks.
        /// </summary>
        /// <param name="message">The user's message.</param>
        /// <param name="conversationId">
        /// The conversation to continue (null or "new" starts one). An id the
        /// server does not know starts a new conversation: compare the id you get.
        /// </param>
        /// <param name="model">A model from the server's allow-list, or null.</param>
        /// <param name="cancellationToken">Cancels like <see cref="ChatStream.Cancel"/>.</param>
        public ChatStream Chat(
            string message,
            string conversationId = null,
            string model = null,
            CancellationToken cancellationToken = default(CancellationToken))
        {
            if (message == null) throw new ArgumentNullException("message");
            CancellationTokenSource linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            ChatStream stream = new ChatStream(SynchronizationContext.Current, linked);
            StringBuilder body = new StringBuilder();
            body.Append("{\"message\":").Append(Json.Quote(message)).Append(",\"stream\":true");
            if (conversationId != null) body.Append(",\"conversation_id\":").Append(Json.Quote(conversationId));
            if (model != null) body.Append(",\"model\":").Append(Json.Quote(model));
            body.Append('}');
            RunAsync(stream, body.ToString(), linked);
            return stream;
        }

        private async void RunAsync(ChatStream stream, string body, CancellationTokenSource cancellation)
        {
            // async void is deliberate: every outcome is delivered through the
            // stream, and nothing here may throw past this method.
            try
            {
                Exception failure = await RunAttemptsAsync(stream, body, cancellation.Token);
                if (failure == null) stream.OnCompleted();
                else stream.OnFailed(failure);
            }
            catch (Exception unexpected)
            {
                stream.OnFailed(new ConvokeException("Unexpected failure: " + unexpected.Message, unexpected));
            }
            finally
            {
                cancellation.Dispose();
            }
        }

        private async Task<Exception> RunAttemptsAsync(ChatStream stream, string body, CancellationToken token)
        {
            Dictionary<string, string> headers = new Dictionary<string, string> { { "Accept", "text/event-stream" } };
            if (!string.IsNullOrEmpty(options.ApiKey)) headers["Authorization"] = "Bearer " + options.ApiKey;
            TransportRequest request = new TransportRequest
            {
                Method = "POST",
                Url = baseUrl + ChatPath,
                Headers = headers,
                JsonBody = body
            };
            for (int attempt = 0; ; attempt++)
            {
                ChatReceiver receiver = new ChatReceiver(stream);
                Exception failure;
                try
                {
                    await transport.SendAsync(request, receiver, token);
                    failure = receiver.Outcome();
                }
                catch (OperationCanceledException) when (token.IsCancellationRequested)
                {
                    return new OperationCanceledException(token);
                }
                catch (ConvokeException error)
                {
                    return error;
                }
                catch (Exception error)
                {
                    if (token.IsCancellationRequested) return new OperationCanceledException(token);
                    failure = new ConvokeNetworkException(
                        "Request failed: " + error.Message, error, receiver.ConversationId);
                }
                if (failure == null) return null;
                // The receiver, not the stream, knows: the stream may see events later, on its context.
                TimeSpan? delay = receiver.ConversationId == null && attempt < options.MaxRetries
                    ? RetryDelay(failure, attempt)
                    : null;
                if (delay == null) return failure;
                try
                {
                    await Task.Delay(delay.Value, token);
                }
                catch (OperationCanceledException)
                {
                    return new OperationCanceledException(token);
                }
            }
        }

        private TimeSpan? RetryDelay(Exception failure, int attempt)
        {
            double factor;
            lock (jitter) factor = 0.5 + jitter.NextDouble() / 2;
            TimeSpan backoff = TimeSpan.FromMilliseconds(Math.Min(
                options.MaxRetryDelay.TotalMilliseconds,
                options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, attempt) * factor));
            ConvokeHttpException http = failure as ConvokeHttpException;
            if (http != null)
            {
                if (http.Status != 429 && http.Status != 503) return null;
                if (http.RetryAfterSeconds == null) return backoff;
                TimeSpan wait = TimeSpan.FromSeconds(http.RetryAfterSeconds.Value);
                return wait > options.MaxRetryDelay ? (TimeSpan?)null : wait;
            }
            return failure is ConvokeNetworkException ? backoff : (TimeSpan?)null;
        }

        /// <summary>Seconds from a Retry-After header (seconds or an HTTP date), or null.</summary>
        public static double? ParseRetryAfter(string header)
        {
            if (string.IsNullOrEmpty(header)) return null;
            double seconds;
            if (double.TryParse(header.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out seconds)) return seconds;
            DateTimeOffset date;
            if (DateTimeOffset.TryParse(header.Trim(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out date))
                return Math.Max(0, (date - DateTimeOffset.UtcNow).TotalSeconds);
            return null;
        }

        public void Dispose()
        {
            IDisposable disposable = transport as IDisposable;
            if (ownsTransport && disposable != null) disposable.Dispose();
        }

        /// <summary>Turns one response into stream events or an error; one per attempt.</summary>
        private sealed class ChatReceiver : ITransportReceiver
        {
            private readonly ChatStream stream;
            private readonly SseParser parser = new SseParser();
            private readonly List<byte> errorBody = new List<byte>();
            private readonly StringBuilder text = new StringBuilder();
            private int status;
            private string retryAfter;
            private bool eventStream;
            private string conversationId;
            private bool done;
            private ChatEvent error;
            private ConvokeProtocolException protocolError;

            public ChatReceiver(ChatStream stream)
            {
                this.stream = stream;
                parser.EventParsed += OnEvent;
            }

            public void OnResponse(int status, string contentType, string retryAfter)
            {
                this.status = status;
                this.retryAfter = retryAfter;
                eventStream = contentType != null && contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase);
            }

            public bool OnData(byte[] buffer, int offset, int count)
            {
                if (status < 200 || status > 299 || !eventStream)
                {
                    // Error bodies are small; keep at most 64 KiB of one.
                    if (errorBody.Count < 65536)
                        for (int index = offset; index < offset + count; index++) errorBody.Add(buffer[index]);
                    return true;
                }
                parser.Feed(buffer, offset, count);
                if (protocolError != null) throw protocolError;
                return !done;
            }

            private void OnEvent(SseEvent received)
            {
                if (done || protocolError != null) return;
                ChatEvent chatEvent;
                try
                {
                    chatEvent = ChatEvent.Decode(received.Data);
                }
                catch (ConvokeProtocolException invalid)
                {
                    protocolError = invalid;
                    return;
                }
                if (conversationId == null && chatEvent.Type != ChatEventType.Metadata)
                {
                    protocolError = new ConvokeProtocolException("The first event is not the metadata event");
                    return;
                }
                switch (chatEvent.Type)
                {
                    case ChatEventType.Metadata:
                        if (conversationId != null) return;
                        conversationId = chatEvent.Metadata.ConversationId;
                        stream.OnMetadata(chatEvent.Metadata);
                        break;
                    case ChatEventType.Content:
                        text.Append(chatEvent.Delta);
                        stream.OnDelta(chatEvent.Delta);
                        break;
                    case ChatEventType.Error:
                        error = chatEvent;
                        break;
                    case ChatEventType.Done:
                        done = true;
                        break;
                }
            }

            /// <summary>The id from the metadata event, once it arrived in this attempt.</summary>
            public string ConversationId { get { return conversationId; } }

            /// <summary>Null when the reply completed, else why it did not.</summary>
            public Exception Outcome()
            {
                if (status < 200 || status > 299)
                {
                    string bodyText = Encoding.UTF8.GetString(errorBody.ToArray());
                    string type = null;
                    string message = null;
                    try
                    {
                        Dictionary<string, object> errorObject = Json.GetObject(Json.Parse(bodyText), "error");
                        type = Json.GetString(errorObject, "type");
                        message = Json.GetString(errorObject, "message");
                    }
                    catch (FormatException)
                    {
                        // Not the common body (a proxy's page): fall back to the status.
                    }
                    return new ConvokeHttpException(
                        status,
                        type ?? "http_" + status,
                        message ?? "HTTP " + status,
                        ParseRetryAfter(retryAfter));
                }
                if (!eventStream) return new ConvokeProtocolException("Expected an event stream");
                if (protocolError != null) return protocolError;
                if (error != null)
                    return new ConvokeStreamException(error.ErrorType, error.ErrorMessage, conversationId, text.ToString());
                if (!done)
                    return new ConvokeNetworkException(
                        conversationId != null ? "The connection closed before the reply was complete" : "The stream ended before its first event",
                        null,
                        conversationId);
                return null;
            }
        }
    }
}
