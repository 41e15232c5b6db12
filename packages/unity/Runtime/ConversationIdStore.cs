// Where a client remembers the current conversation id, per key, so that an
// app restart (a new ConvokeClient) continues the same conversation. Give one
// to ConvokeClientOptions.ConversationIdStore: Chat() without an id continues
// the stored conversation, and every metadata event stores its id.
// PlayerPrefsConversationIdStore (inside Unity) and FileConversationIdStore
// (anywhere, e.g. under Application.persistentDataPath) survive restarts;
// MemoryConversationIdStore lasts as long as the object.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

namespace Convoke
{
    /// <summary>
    /// A key → conversation id store. The client calls it on the context that
    /// called Chat (Unity's main thread in a MonoBehaviour), or on a reading
    /// thread when there is none. A failure is ignored: it never breaks a reply.
    /// </summary>
    public interface IConversationIdStore
    {
        /// <summary>The id stored for <paramref name="key"/>, or null.</summary>
        string Get(string key);

        /// <summary>Stores <paramref name="conversationId"/> for <paramref name="key"/>.</summary>
        void Set(string key, string conversationId);

        /// <summary>Forgets the id for <paramref name="key"/>: the next chat with it starts a new conversation.</summary>
        void Clear(string key);
    }

    /// <summary>Keeps ids in memory, for one client's lifetime (or one test).</summary>
    public sealed class MemoryConversationIdStore : IConversationIdStore
    {
        private readonly Dictionary<string, string> ids = new Dictionary<string, string>();

        public string Get(string key)
        {
            lock (ids)
            {
                string id;
                return ids.TryGetValue(key, out id) ? id : null;
            }
        }

        public void Set(string key, string conversationId)
        {
            lock (ids) ids[key] = conversationId;
        }

        public void Clear(string key)
        {
            lock (ids) ids.Remove(key);
        }
    }

    /// <summary>
    /// Keeps each id in a small file of its own in a directory (created when
    /// needed), e.g. <c>Path.Combine(Application.persistentDataPath, "convoke")</c>
    /// in Unity, or any folder in a standalone program.
    /// </summary>
    public sealed class FileConversationIdStore : IConversationIdStore
    {
        private readonly string directory;
        private readonly object gate = new object();

        public FileConversationIdStore(string directory)
        {
            if (string.IsNullOrEmpty(directory)) throw new ArgumentException("A directory is required", "directory");
            this.directory = directory;
        }

        /// <summary>The directory the files are in.</summary>
        public string Directory { get { return directory; } }

        public string Get(string key)
        {
            string path = PathOf(key);
            lock (gate)
            {
                if (!File.Exists(path)) return null;
                string id = File.ReadAllText(path, Encoding.UTF8).Trim();
                return id.Length == 0 ? null : id;
            }
        }

        public void Set(string key, string conversationId)
        {
            if (conversationId == null) throw new ArgumentNullException("conversationId");
            string path = PathOf(key);
            lock (gate)
            {
                System.IO.Directory.CreateDirectory(directory);
                // Written aside, then moved over the old file: a crash leaves the old id or the new one.
                string temporary = path + ".tmp";
                File.WriteAllText(temporary, conversationId, new UTF8Encoding(false));
                if (File.Exists(path)) File.Delete(path);
                File.Move(temporary, path);
            }
        }

        public void Clear(string key)
        {
            string path = PathOf(key);
            lock (gate)
            {
                if (File.Exists(path)) File.Delete(path);
            }
        }

        // Keys become file names: letters, digits, '-' and '_' stay, anything else is hex-escaped.
        private string PathOf(string key)
        {
            if (key == null) throw new ArgumentNullException("key");
            StringBuilder name = new StringBuilder("conversation-");
            foreach (byte value in Encoding.UTF8.GetBytes(key))
            {
                char character = (char)value;
                bool plain = (character >= 'a' && character <= 'z') || (character >= 'A' && character <= 'Z')
                    || (character >= '0' && character <= '9') || character == '-';
                if (plain) name.Append(character);
                else name.Append('_').Append(value.ToString("x2"));
            }
            return Path.Combine(directory, name.Append(".txt").ToString());
        }
    }
}
