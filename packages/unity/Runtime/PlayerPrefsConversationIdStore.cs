// The conversation id store on Unity's PlayerPrefs: survives app restarts on
// every platform, WebGL included. Unity only allows PlayerPrefs on the main
// thread; the client calls stores on the context that called Chat, so call
// Chat from the main thread (a MonoBehaviour does).
#if UNITY_5_3_OR_NEWER
using UnityEngine;

namespace Convoke
{
    /// <summary>Keeps conversation ids in <c>PlayerPrefs</c> under <c>prefix + key</c>.</summary>
    public sealed class PlayerPrefsConversationIdStore : IConversationIdStore
    {
        private readonly string prefix;

        /// <summary>Keys are stored as <paramref name="prefix"/> + key (default "convoke.conversation.").</summary>
        public PlayerPrefsConversationIdStore(string prefix = "convoke.conversation.")
        {
            this.prefix = prefix ?? "";
        }

        public string Get(string key)
        {
            string id = PlayerPrefs.GetString(prefix + key, "");
            return id.Length == 0 ? null : id;
        }

        public void Set(string key, string conversationId)
        {
            PlayerPrefs.SetString(prefix + key, conversationId);
            PlayerPrefs.Save();
        }

        public void Clear(string key)
        {
            PlayerPrefs.DeleteKey(prefix + key);
            PlayerPrefs.Save();
        }
    }
}
#endif
