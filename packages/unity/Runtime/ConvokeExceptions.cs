// The exceptions a chat can fail with. All derive from ConvokeException;
// cancellation is reported the .NET way, as OperationCanceledException.
using System;

namespace Convoke
{
    /// <summary>The base of every exception the client throws.</summary>
    public class ConvokeException : Exception
    {
        public ConvokeException(string message) : base(message) { }
        public ConvokeException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>
    /// The server answered with an error status before the stream started
    /// (400, 401, 404, 413, 429, 503, …) and the common body
    /// <c>{"error":{"type","message"}}</c>.
    /// </summary>
    public sealed class ConvokeHttpException : ConvokeException
    {
        public ConvokeHttpException(int status, string type, string message, double? retryAfterSeconds)
            : base(message)
        {
            Status = status;
            Type = type;
            RetryAfterSeconds = retryAfterSeconds;
        }

        public int Status { get; private set; }
        /// <summary>The error type from the body (e.g. "invalid_request"), or "http_&lt;status&gt;".</summary>
        public string Type { get; private set; }
        /// <summary>The Retry-After header in seconds, when sent (429, 503).</summary>
        public double? RetryAfterSeconds { get; private set; }
    }

    /// <summary>
    /// The server sent an error event after the stream had started: the
    /// conversation exists, and <see cref="PartialText"/> is what arrived before.
    /// </summary>
    public sealed class ConvokeStreamException : ConvokeException
    {
        public ConvokeStreamException(string type, string message, string conversationId, string partialText)
            : base(message)
        {
            Type = type;
            ConversationId = conversationId;
            PartialText = partialText;
        }

        /// <summary>The error type (e.g. "overloaded_error", "shutdown").</summary>
        public string Type { get; private set; }
        public string ConversationId { get; private set; }
        public string PartialText { get; private set; }
    }

    /// <summary>The server could not be reached, or the connection broke.</summary>
    public sealed class ConvokeNetworkException : ConvokeException
    {
        public ConvokeNetworkException(string message, Exception inner, string conversationId)
            : base(message, inner)
        {
            ConversationId = conversationId;
        }

        /// <summary>The conversation id when the connection broke after the metadata event, else null.</summary>
        public string ConversationId { get; private set; }
    }

    /// <summary>The server's answer does not follow the v0.3 contract.</summary>
    public sealed class ConvokeProtocolException : ConvokeException
    {
        public ConvokeProtocolException(string message) : base(message) { }
    }
}
