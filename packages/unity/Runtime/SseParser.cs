// Incremental Server-Sent Events parser: bytes in, events out, in whatever
// pieces the network delivers them. Follows the WHATWG event-stream rules:
// lines end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the
// start of the next are one line ending); lines starting with ':' are
// comments; a blank line dispatches the event when it has data; a multi-byte
// UTF-8 character split across chunks is decoded correctly.
using System;
using System.Collections.Generic;
using System.Text;

namespace Convoke
{
    /// <summary>One Server-Sent Event: its data (lines joined by '\n') and optional name and id.</summary>
    public sealed class SseEvent
    {
        public SseEvent(string data, string eventName, string id)
        {
            Data = data;
            EventName = eventName;
            Id = id;
        }

        public string Data { get; private set; }
        /// <summary>The <c>event:</c> field, or null for the default "message".</summary>
        public string EventName { get; private set; }
        /// <summary>The last <c>id:</c> seen in the stream, or null.</summary>
        public string Id { get; private set; }
    }

    /// <summary>
    /// Feed it the body's bytes as they arrive; it calls <see cref="EventParsed"/>
    /// for every complete event and <see cref="CommentParsed"/> for comments
    /// (such as the server's ": ping" heartbeats). Not thread-safe: feed from one reader.
    /// </summary>
    public sealed class SseParser
    {
        private readonly Decoder decoder = new UTF8Encoding(false, false).GetDecoder();
        private readonly StringBuilder line = new StringBuilder();
        private readonly StringBuilder data = new StringBuilder();
        private char[] chars = new char[1024];
        private bool hasData;
        private bool afterCarriageReturn;
        private bool sawFirstLine;
        private string eventName;
        private string lastEventId;

        /// <summary>Raised for each complete event.</summary>
        public event Action<SseEvent> EventParsed;

        /// <summary>Raised for each comment line, without the leading ':'.</summary>
        public event Action<string> CommentParsed;

        /// <summary>Parses the next piece of the body.</summary>
        public void Feed(byte[] buffer, int offset, int count)
        {
            if (count == 0) return;
            int needed = decoder.GetCharCount(buffer, offset, count, false);
            if (needed > chars.Length) chars = new char[Math.Max(needed, chars.Length * 2)];
            int decoded = decoder.GetChars(buffer, offset, count, chars, 0, false);
            for (int index = 0; index < decoded; index++)
            {
                char character = chars[index];
                if (afterCarriageReturn)
                {
                    afterCarriageReturn = false;
                    if (character == '\n') continue;
                }
                if (character == '\r')
                {
                    afterCarriageReturn = true;
                    EndLine();
                }
                else if (character == '\n')
                {
                    EndLine();
                }
                else
                {
                    line.Append(character);
                }
            }
        }

        /// <summary>Convenience overload for a whole array.</summary>
        public void Feed(byte[] buffer)
        {
            Feed(buffer, 0, buffer.Length);
        }

        private void EndLine()
        {
            string text = line.ToString();
            line.Length = 0;
            if (!sawFirstLine)
            {
                sawFirstLine = true;
                // A byte order mark at the very start is not part of the first field.
                if (text.Length > 0 && text[0] == '\uFEFF') text = text.Substring(1);
            }
            if (text.Length == 0)
            {
                Dispatch();
                return;
            }
            if (text[0] == ':')
            {
                Action<string> comment = CommentParsed;
                if (comment != null) comment(text.Substring(1).TrimStart(' '));
                return;
            }
            int colon = text.IndexOf(':');
            string field = colon < 0 ? text : text.Substring(0, colon);
            string value = colon < 0 ? "" : text.Substring(colon + 1);
            if (value.Length > 0 && value[0] == ' ') value = value.Substring(1);
            switch (field)
            {
                case "data":
                    if (hasData) data.Append('\n');
                    data.Append(value);
                    hasData = true;
                    break;
                case "event":
                    eventName = value;
                    break;
                case "id":
                    if (value.IndexOf('\0') < 0) lastEventId = value;
                    break;
                // "retry" and unknown fields are ignored: the client has its own retry policy.
            }
        }

        private void Dispatch()
        {
            if (!hasData)
            {
                eventName = null;
                return;
            }
            SseEvent parsed = new SseEvent(data.ToString(), eventName, lastEventId);
            data.Length = 0;
            hasData = false;
            eventName = null;
            Action<SseEvent> handler = EventParsed;
            if (handler != null) handler(parsed);
        }

        /// <summary>Parses a whole body at once (for tests and buffered transports).</summary>
        public static List<SseEvent> ParseAll(byte[] body)
        {
            List<SseEvent> events = new List<SseEvent>();
            SseParser parser = new SseParser();
            parser.EventParsed += events.Add;
            parser.Feed(body);
            return events;
        }
    }
}
