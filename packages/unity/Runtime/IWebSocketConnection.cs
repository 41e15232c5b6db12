// One WebSocket as the WebSocket transport uses it: JSON text frames in and
// out. ClientWebSocketConnection (System.Net.WebSockets.ClientWebSocket) is
// the one for the Editor, standalone, Android and iOS. Unity WebGL has no
// ClientWebSocket: there, a connection backed by the browser's WebSocket (a
// .jslib bridge) implements this interface with CanSetHeaders = false, and
// the client authenticates the socket with a ticket instead of headers.
using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>
    /// A WebSocket carrying text frames; made by <see cref="ConvokeClientOptions.WebSocketFactory"/>,
    /// one per socket. The client calls <see cref="SendAsync"/> one frame at a
    /// time and <see cref="ReceiveAsync"/> from one reading loop.
    /// </summary>
    public interface IWebSocketConnection : IDisposable
    {
        /// <summary>
        /// Whether <see cref="ConnectAsync"/> sends the headers it is given.
        /// When false (browsers, Unity WebGL) the client fetches a single-use
        /// ticket from <c>POST /api/v0.3/ws/ticket</c> and puts it in the URL as <c>?ticket=</c>.
        /// </summary>
        bool CanSetHeaders { get; }

        /// <summary>
        /// Opens the socket with these headers on the upgrade request. Fails
        /// (with any exception) when the server cannot be reached or refuses
        /// the upgrade.
        /// </summary>
        Task ConnectAsync(Uri uri, IDictionary<string, string> headers, CancellationToken cancellationToken);

        /// <summary>Sends one text frame.</summary>
        Task SendAsync(string text, CancellationToken cancellationToken);

        /// <summary>
        /// The next text frame, or null once the socket has closed. Fails when
        /// the connection breaks.
        /// </summary>
        Task<string> ReceiveAsync(CancellationToken cancellationToken);

        /// <summary>Closes the socket with a normal closure, as far as the server lets it within a moment.</summary>
        Task CloseAsync();
    }
}
