// How bytes travel. A transport sends one HTTP request and hands the response
// to a receiver as it arrives; parsing, retries and events live in
// ConvokeClient, once, for every transport.
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>One request for a transport to send.</summary>
    public sealed class TransportRequest
    {
        public string Method { get; set; }
        public string Url { get; set; }
        /// <summary>Request headers, e.g. Accept and Authorization.</summary>
        public IDictionary<string, string> Headers { get; set; }
        /// <summary>A JSON body, or null.</summary>
        public string JsonBody { get; set; }
    }

    /// <summary>Receives a response as the transport reads it.</summary>
    public interface ITransportReceiver
    {
        /// <summary>Called once, when the status and headers are known, before any body bytes.</summary>
        void OnResponse(int status, string contentType, string retryAfter);

        /// <summary>Called for each piece of the body, in order. Return false to stop reading.</summary>
        bool OnData(byte[] buffer, int offset, int count);
    }

    /// <summary>
    /// Sends requests. <see cref="HttpClientTransport"/> works under Mono, .NET
    /// and Unity; <c>UnityWebRequestTransport</c> exists inside Unity only.
    /// </summary>
    public interface IChatTransport
    {
        /// <summary>
        /// Sends the request and feeds the receiver until the body ends, the
        /// receiver returns false, or the token is cancelled (then the task is
        /// cancelled). Fails with the transport's own exception when the server
        /// cannot be reached or the connection breaks.
        /// </summary>
        Task SendAsync(TransportRequest request, ITransportReceiver receiver, CancellationToken cancellationToken);
    }
}
