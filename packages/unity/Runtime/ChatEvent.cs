// The v0.3 wire events, decoded from an SSE event's data or a WebSocket
// frame. Shared by every transport: a transport only moves bytes, this file
// gives them meaning.
using System;
using System.Collections.Generic;

namespace Convoke
{
    /// <summary>The kinds of v0.3 events.</summary>
    public enum ChatEventType
    {
        /// <summary>The first event: the conversation id, before any content.</summary>
        Metadata,
        /// <summary>A piece of the reply.</summary>
        Content,
        /// <summary>A failure after the stream started; Done follows.</summary>
        Error,
        /// <summary>The <c>[DONE]</c> terminator.</summary>
        Done,
        /// <summary>An event type this version does not know; skip it.</summary>
        Unknown
    }

    /// <summary>What the metadata event says about the conversation.</summary>
    public sealed class ChatMetadata
    {
        public ChatMetadata(string conversationId, string model, long timestamp, bool temporary)
            : this(conversationId, model, timestamp, temporary, null, false) { }

        public ChatMetadata(string conversationId, string model, long timestamp, bool temporary, string turnId, bool resumed)
        {
            ConversationId = conversationId;
            Model = model;
            Timestamp = timestamp;
            Temporary = temporary;
            TurnId = turnId;
            Resumed = resumed;
        }

        public string ConversationId { get; private set; }
        /// <summary>The public model name the server reports.</summary>
        public string Model { get; private set; }
        /// <summary>Server time of the event, Unix seconds.</summary>
        public long Timestamp { get; private set; }
        /// <summary>True when the server could not store the conversation yet (it will, under this id).</summary>
        public bool Temporary { get; private set; }
        /// <summary>The turn this stream carries (servers before turns send none): later events' ids name it.</summary>
        public string TurnId { get; private set; }
        /// <summary>True on the metadata event of a resumed stream (it repeats the first one).</summary>
        public bool Resumed { get; private set; }
    }

    /// <summary>One decoded v0.3 event.</summary>
    public sealed class ChatEvent
    {
        private ChatEvent(ChatEventType type)
        {
            Type = type;
        }

        public ChatEventType Type { get; private set; }
        /// <summary>Set for <see cref="ChatEventType.Metadata"/>.</summary>
        public ChatMetadata Metadata { get; private set; }
        /// <summary>Set for <see cref="ChatEventType.Content"/>.</summary>
        public string Delta { get; private set; }
        /// <summary>Set for <see cref="ChatEventType.Error"/> (e.g. "overloaded_error").</summary>
        public string ErrorType { get; private set; }
        public string ErrorMessage { get; private set; }

        /// <summary>Decodes an SSE event's data; throws <see cref="ConvokeProtocolException"/> when malformed.</summary>
        public static ChatEvent Decode(string data)
        {
            if (data == "[DONE]") return new ChatEvent(ChatEventType.Done);
            object parsed;
            try
            {
                parsed = Json.Parse(data);
            }
            catch (FormatException error)
            {
                throw new ConvokeProtocolException("An event is not JSON: " + error.Message);
            }
            return FromJson(parsed, false);
        }

        /// <summary>
        /// The event in parsed JSON: an SSE event's data, or a WebSocket frame
        /// (<paramref name="frame"/>), where <c>{"type":"done"}</c> stands for [DONE].
        /// </summary>
        internal static ChatEvent FromJson(object parsed, bool frame)
        {
            string type = Json.GetString(parsed, "type");
            Dictionary<string, object> map = parsed as Dictionary<string, object>;
            if (map == null) throw new ConvokeProtocolException("An event is not a JSON object");
            switch (type)
            {
                case "done":
                    return new ChatEvent(frame ? ChatEventType.Done : ChatEventType.Unknown);
                case "metadata":
                {
                    string id = Json.GetString(parsed, "conversation_id");
                    if (string.IsNullOrEmpty(id)) throw new ConvokeProtocolException("The metadata event has no conversation_id");
                    object timestamp;
                    object temporary;
                    object resumed;
                    long seconds = map.TryGetValue("timestamp", out timestamp) && timestamp is double ? (long)(double)timestamp : 0;
                    bool isTemporary = map.TryGetValue("temporary", out temporary) && temporary is bool && (bool)temporary;
                    bool isResumed = map.TryGetValue("resumed", out resumed) && resumed is bool && (bool)resumed;
                    string turnId = Json.GetString(parsed, "turn_id");
                    return new ChatEvent(ChatEventType.Metadata)
                    {
                        Metadata = new ChatMetadata(id, Json.GetString(parsed, "model"), seconds, isTemporary, turnId, isResumed)
                    };
                }
                case "content":
                {
                    string delta = Json.GetString(Json.GetObject(parsed, "delta"), "content");
                    if (delta == null) throw new ConvokeProtocolException("A content event has no delta.content");
                    return new ChatEvent(ChatEventType.Content) { Delta = delta };
                }
                case "error":
                {
                    Dictionary<string, object> error = Json.GetObject(parsed, "error");
                    return new ChatEvent(ChatEventType.Error)
                    {
                        ErrorType = Json.GetString(error, "type") ?? "unknown_error",
                        ErrorMessage = Json.GetString(error, "message") ?? "Unknown error"
                    };
                }
                default:
                    return new ChatEvent(ChatEventType.Unknown);
            }
        }
    }
}
