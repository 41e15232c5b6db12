/**
 * The demo chat again, built with React and the Vercel AI SDK's `useChat`
 * over `@convoke/client/ai-sdk`'s transport: the conversation id comes from
 * the first event's message metadata, the reply streams in, Stop ends the
 * turn on the server, and a reload mid-reply resumes it (`resume: true`).
 * The chat id lives in `localStorage`, and the client remembers each chat's
 * conversation there too, so a reload continues the same conversation.
 */
import { useChat } from "@ai-sdk/react"
import { ConversationStorage, ConvokeClient } from "@convoke/client"
import { ConvokeChatTransport, type ConvokeUIMessage } from "@convoke/client/ai-sdk"
import { type FormEvent, StrictMode, useState } from "react"
import { createRoot } from "react-dom/client"
import "./style.css"

const CHAT_KEY = "convoke-demo:use-chat-id"

const transport = new ConvokeChatTransport({
  client: new ConvokeClient({ storage: ConversationStorage.localStorage() })
})

const storedChatId = (): string => {
  const found = localStorage.getItem(CHAT_KEY)
  if (found !== null) return found
  const created = crypto.randomUUID()
  localStorage.setItem(CHAT_KEY, created)
  return created
}

const textOf = (message: ConvokeUIMessage): string =>
  message.parts.flatMap((part) => (part.type === "text" ? [part.text] : [])).join("")

const Chat = ({ chatId, onNewChat }: { chatId: string; onNewChat: () => void }) => {
  const { messages, sendMessage, status, stop, error } = useChat<ConvokeUIMessage>({
    id: chatId,
    transport,
    resume: true
  })
  const [input, setInput] = useState("")
  const busy = status === "submitted" || status === "streaming"
  const conversationId = messages.findLast((message) => message.metadata !== undefined)?.metadata
    ?.conversationId
  const last = messages.at(-1)

  const submit = (event: FormEvent) => {
    event.preventDefault()
    if (input.trim() === "" || busy) return
    void sendMessage({ text: input })
    setInput("")
  }

  return (
    <div className="app single">
      <main>
        <header className="status">
          <h1>Convoke with useChat</h1>
          <nav className="page-links">
            <a href="/">The plain page</a> ·{" "}
            <button id="new-chat" type="button" onClick={onNewChat} disabled={busy}>
              New chat
            </button>
          </nav>
        </header>
        <section className="status" aria-live="polite">
          <div>
            Conversation{" "}
            <code id="conversation-id" data-state={conversationId === undefined ? "none" : "known"}>
              {conversationId ?? "none yet"}
            </code>
          </div>
          <div id="chat-status" className="timing" data-status={status}>
            {status}
          </div>
        </section>
        <ol id="messages" aria-label="Messages">
          {messages.map((message) => (
            <li
              key={message.id}
              data-role={message.role}
              data-state={
                message.role === "user"
                  ? "complete"
                  : message === last && busy
                    ? "streaming"
                    : message === last && status === "error"
                      ? "error"
                      : "complete"
              }
            >
              {textOf(message)}
            </li>
          ))}
        </ol>
        {error === undefined ? null : (
          <p id="error" role="alert">
            {error.message}
          </p>
        )}
        <form id="composer" onSubmit={submit}>
          <textarea
            id="message"
            rows={2}
            placeholder="Say something… (Enter sends, Shift+Enter for a new line)"
            value={input}
            onChange={(event) => setInput(event.target.value)}
            onKeyDown={(event) => {
              if (event.key === "Enter" && !event.shiftKey) submit(event)
            }}
          />
          <div className="actions">
            <button id="send" type="submit" disabled={busy}>
              Send
            </button>
            <button id="stop" type="button" disabled={!busy} onClick={() => void stop()}>
              Stop
            </button>
          </div>
        </form>
      </main>
    </div>
  )
}

const App = () => {
  const [chatId, setChatId] = useState(storedChatId)
  const newChat = () => {
    const created = crypto.randomUUID()
    localStorage.setItem(CHAT_KEY, created)
    setChatId(created)
  }
  return <Chat key={chatId} chatId={chatId} onNewChat={newChat} />
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>
)
