// A small JSON reader and string writer, enough for the v0.3 events and error
// bodies, so the package needs neither Newtonsoft nor Unity's JsonUtility
// (which cannot read a union of event shapes) and runs unchanged under Mono,
// .NET and Unity's .NET Standard 2.1 profile.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Convoke
{
    /// <summary>
    /// Parses JSON into <c>Dictionary&lt;string, object&gt;</c>, <c>List&lt;object&gt;</c>,
    /// <c>string</c>, <c>double</c>, <c>bool</c> and <c>null</c>; writes JSON strings.
    /// </summary>
    public static class Json
    {
        /// <summary>Parses a JSON text; throws <see cref="FormatException"/> when it is not valid JSON.</summary>
        public static object Parse(string text)
        {
            if (text == null) throw new ArgumentNullException("text");
            int position = 0;
            object value = ReadValue(text, ref position, 0);
            SkipWhitespace(text, ref position);
            if (position != text.Length) throw Error(position, "unexpected text after the value");
            return value;
        }

        /// <summary>Writes <paramref name="value"/> as a quoted JSON string.</summary>
        public static string Quote(string value)
        {
            StringBuilder builder = new StringBuilder(value.Length + 2);
            builder.Append('"');
            foreach (char character in value)
            {
                switch (character)
                {
                    case '"': builder.Append("\\\""); break;
                    case '\\': builder.Append("\\\\"); break;
                    case '\n': builder.Append("\\n"); break;
                    case '\r': builder.Append("\\r"); break;
                    case '\t': builder.Append("\\t"); break;
                    case '\b': builder.Append("\\b"); break;
                    case '\f': builder.Append("\\f"); break;
                    default:
                        if (character < 0x20 || character == '\u2028' || character == '\u2029')
                            builder.Append("\\u").Append(((int)character).ToString("x4", CultureInfo.InvariantCulture));
                        else
                            builder.Append(character);
                        break;
                }
            }
            return builder.Append('"').ToString();
        }

        /// <summary>The string member <paramref name="key"/> of an object, or null.</summary>
        public static string GetString(object value, string key)
        {
            Dictionary<string, object> map = value as Dictionary<string, object>;
            object member;
            return map != null && map.TryGetValue(key, out member) ? member as string : null;
        }

        /// <summary>The object member <paramref name="key"/> of an object, or null.</summary>
        public static Dictionary<string, object> GetObject(object value, string key)
        {
            Dictionary<string, object> map = value as Dictionary<string, object>;
            object member;
            return map != null && map.TryGetValue(key, out member) ? member as Dictionary<string, object> : null;
        }

        private const int MaxDepth = 64;

        private static FormatException Error(int position, string message)
        {
            return new FormatException("Invalid JSON at " + position + ": " + message);
        }

        private static void SkipWhitespace(string text, ref int position)
        {
            while (position < text.Length)
            {
                char character = text[position];
                if (character != ' ' && character != '\t' && character != '\n' && character != '\r') return;
                position++;
            }
        }

        private static object ReadValue(string text, ref int position, int depth)
        {
            if (depth > MaxDepth) throw Error(position, "nested too deeply");
            SkipWhitespace(text, ref position);
            if (position >= text.Length) throw Error(position, "unexpected end");
            char character = text[position];
            switch (character)
            {
                case '{': return ReadObject(text, ref position, depth);
                case '[': return ReadArray(text, ref position, depth);
                case '"': return ReadString(text, ref position);
                case 't': return ReadLiteral(text, ref position, "true", true);
                case 'f': return ReadLiteral(text, ref position, "false", false);
                case 'n': return ReadLiteral(text, ref position, "null", null);
                default:
                    if (character == '-' || (character >= '0' && character <= '9')) return ReadNumber(text, ref position);
                    throw Error(position, "unexpected character '" + character + "'");
            }
        }

        private static object ReadLiteral(string text, ref int position, string literal, object value)
        {
            if (string.CompareOrdinal(text, position, literal, 0, literal.Length) != 0)
                throw Error(position, "expected " + literal);
            position += literal.Length;
            return value;
        }

        private static Dictionary<string, object> ReadObject(string text, ref int position, int depth)
        {
            Dictionary<string, object> map = new Dictionary<string, object>();
            position++;
            SkipWhitespace(text, ref position);
            if (position < text.Length && text[position] == '}')
            {
                position++;
                return map;
            }
            while (true)
            {
                SkipWhitespace(text, ref position);
                if (position >= text.Length || text[position] != '"') throw Error(position, "expected a key");
                string key = ReadString(text, ref position);
                SkipWhitespace(text, ref position);
                if (position >= text.Length || text[position] != ':') throw Error(position, "expected ':'");
                position++;
                map[key] = ReadValue(text, ref position, depth + 1);
                SkipWhitespace(text, ref position);
                if (position >= text.Length) throw Error(position, "unexpected end");
                if (text[position] == ',')
                {
                    position++;
                    continue;
                }
                if (text[position] == '}')
                {
                    position++;
                    return map;
                }
                throw Error(position, "expected ',' or '}'");
            }
        }

        private static List<object> ReadArray(string text, ref int position, int depth)
        {
            List<object> list = new List<object>();
            position++;
            SkipWhitespace(text, ref position);
            if (position < text.Length && text[position] == ']')
            {
                position++;
                return list;
            }
            while (true)
            {
                list.Add(ReadValue(text, ref position, depth + 1));
                SkipWhitespace(text, ref position);
                if (position >= text.Length) throw Error(position, "unexpected end");
                if (text[position] == ',')
                {
                    position++;
                    continue;
                }
                if (text[position] == ']')
                {
                    position++;
                    return list;
                }
                throw Error(position, "expected ',' or ']'");
            }
        }

        private static string ReadString(string text, ref int position)
        {
            StringBuilder builder = new StringBuilder();
            position++;
            while (true)
            {
                if (position >= text.Length) throw Error(position, "unterminated string");
                char character = text[position++];
                if (character == '"') return builder.ToString();
                if (character < 0x20) throw Error(position - 1, "control character in string");
                if (character != '\\')
                {
                    builder.Append(character);
                    continue;
                }
                if (position >= text.Length) throw Error(position, "unterminated escape");
                char escape = text[position++];
                switch (escape)
                {
                    case '"': builder.Append('"'); break;
                    case '\\': builder.Append('\\'); break;
                    case '/': builder.Append('/'); break;
                    case 'b': builder.Append('\b'); break;
                    case 'f': builder.Append('\f'); break;
                    case 'n': builder.Append('\n'); break;
                    case 'r': builder.Append('\r'); break;
                    case 't': builder.Append('\t'); break;
                    case 'u':
                        int code;
                        if (position + 4 > text.Length ||
                            !int.TryParse(text.Substring(position, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out code))
                            throw Error(position, "bad \\u escape");
                        builder.Append((char)code);
                        position += 4;
                        break;
                    default:
                        throw Error(position - 1, "bad escape");
                }
            }
        }

        private static double ReadNumber(string text, ref int position)
        {
            int start = position;
            while (position < text.Length && "+-0123456789.eE".IndexOf(text[position]) >= 0) position++;
            double value;
            if (!double.TryParse(text.Substring(start, position - start), NumberStyles.Float, CultureInfo.InvariantCulture, out value))
                throw Error(start, "bad number");
            return value;
        }
    }
}
