// The WebSocket connection on System.Net.WebSockets.ClientWebSocket, for the
// Editor, standalone, Android, iOS and Mono/.NET outside Unity. Not on WebGL:
// the browser owns sockets there (see IWebSocketConnection).
using System;
using System.Collections.Generic;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Convoke
{
    /// <summary>An <see cref="IWebSocketConnection"/> on <see cref="ClientWebSocket"/>; credentials travel as headers.</summary>
    public sealed class ClientWebSocketConnection : IWebSocketConnection
    {
        private readonly ClientWebSocket socket = new ClientWebSocket();
        private const int MaxFrameBytes = 16 * 1024 * 1024;
        private readonly byte[] buffer = new byte[16384];

        /// <summary>A connection whose socket is configured by <paramref name="configure"/> (proxy, certificates…) before it connects.</summary>
        public ClientWebSocketConnection(Action<ClientWebSocketOptions> configure = null)
        {
            if (configure != null) configure(socket.Options);
        }

        public bool CanSetHeaders { get { return true; } }

        public Task ConnectAsync(Uri uri, IDictionary<string, string> headers, CancellationToken cancellationToken)
        {
            if (headers != null)
            {
                foreach (KeyValuePair<string, string> header in headers) socket.Options.SetRequestHeader(header.Key, header.Value);
            }
            return socket.ConnectAsync(uri, cancellationToken);
        }

        public Task SendAsync(string text, CancellationToken cancellationToken)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            return socket.SendAsync(new ArraySegment<byte>(bytes), WebSocketMessageType.Text, true, cancellationToken);
        }

        public async Task<string> ReceiveAsync(CancellationToken cancellationToken)
        {
            using (MemoryStream message = new MemoryStream())
            {
                while (true)
                {
                    WebSocketReceiveResult result = await socket
                        .ReceiveAsync(new ArraySegment<byte>(buffer), cancellationToken)
                        .ConfigureAwait(false);
                    if (result.MessageType == WebSocketMessageType.Close) return null;
                    message.Write(buffer, 0, result.Count);
                    if (message.Length > MaxFrameBytes) throw new ConvokeProtocolException("A frame from the server is over 16 MiB");
                    if (result.EndOfMessage)
                    {
                        if (result.MessageType != WebSocketMessageType.Text)
                            throw new ConvokeProtocolException("The server sent a binary frame");
                        return Encoding.UTF8.GetString(message.GetBuffer(), 0, (int)message.Length);
                    }
                }
            }
        }

        public async Task CloseAsync()
        {
            if (socket.State != WebSocketState.Open && socket.State != WebSocketState.CloseReceived) return;
            using (CancellationTokenSource timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2)))
            {
                try
                {
                    // Only the close frame: the reading loop receives the server's answer, if it comes.
                    await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", timeout.Token).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // The socket is going anyway: Dispose aborts it.
                }
            }
        }

        public void Dispose()
        {
            socket.Dispose();
        }
    }
}
