/**
 * The demo chat again, built with React and the Vercel AI SDK's `useChat`
 * over `@convoke/client/ai-sdk`'s transport: the conversation id comes from
 * the first event's message metadata, the reply streams in, Stop ends the
 * turn on the server, and a reload mid-reply resumes it (`resume: true`).
 * The chat id lives in `localStorage`, and the client remembers each chat's
 * conversation there too, so a reload continues the same conversation: the
 * page starts from the stored messages and resumes the reply still running.
 */
import { useChat } from "@ai-sdk/react"
import { ConversationStorage, ConvokeClient } from "@convoke/client"
import { ConvokeChatTransport, type ConvokeUIMessage } from "@convoke/client/ai-sdk"
import { type FormEvent, StrictMode, useEffect, useState } from "react"
import { createRoot } from "react-dom/client"
import "./style.css"

const CHAT_KEY = "convoke-demo:use-chat-id"

const client = new ConvokeClient({ storage: ConversationStorage.localStorage() })
const transport = new ConvokeChatTransport({ client })

const storedChatId = (): string => {
  const found = localStorage.getItem(CHAT_KEY)
  if (found !== null) return found
  const created = crypto.randomUUID()
  localStorage.setItem(CHAT_KEY, created)
  return created
}

const textOf = (message: ConvokeUIMessage): string =>
  message.parts.flatMap((part) => (part.type === "text" ? [part.text] : [])).join("")

/** What a chat starts from: its conversation's stored messages, if it has one. */
interface Stored {
  readonly conversationId: string | undefined
  readonly messages: Array<ConvokeUIMessage>
  /** Status of each stored message (`complete`, `cancelled`, …), by id. */
  readonly statuses: ReadonlyMap<string, string>
}

const empty: Stored = { conversationId: undefined, messages: [], statuses: new Map() }

/**
 * The chat's stored messages, without the reply of a running turn: `useChat`
 * gets that one, from its start, by resuming the turn.
 */
const loadStored = async (chatId: string): Promise<Stored> => {
  const conversationId = await transport.conversationId(chatId)
  if (conversationId === undefined) return empty
  try {
    const conversation = await client.conversations.get(conversationId)
    const messages = conversation.messages.filter((message) => message.status !== "streaming")
    return {
      conversationId,
      messages: messages.map((message) => ({
        id: message.id,
        role: message.role,
        parts: [{ type: "text", text: message.content }]
      })),
      statuses: new Map(messages.map((message) => [message.id, message.status]))
    }
  } catch {
    return empty
  }
}

const Chat = ({ chatId, stored, onNewChat }: { chatId: string; stored: Stored; onNewChat: () => void }) => {
  const { messages, sendMessage, status, stop, error } = useChat<ConvokeUIMessage>({
    id: chatId,
    messages: stored.messages,
    transport,
    resume: true,
    // Replies stopped here show as such (the server stores them as `cancelled`).
    onFinish: ({ message, isAbort }) => {
      if (isAbort) setStopped((ids) => new Set(ids).add(message.id))
    }
  })
  const [stopped, setStopped] = useState<ReadonlySet<string>>(new Set())
  const [input, setInput] = useState("")
  const busy = status === "submitted" || status === "streaming"
  // From the first event of the latest reply streamed here, else from the stored conversation.
  const streamedId = messages.findLast((message) => message.metadata !== undefined)?.metadata?.conversationId
  const conversationId = streamedId ?? stored.conversationId
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
            <code
              id="conversation-id"
              data-state={conversationId === undefined ? "none" : "known"}
              data-source={streamedId === undefined ? "stored" : "stream"}
            >
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
                stored.statuses.get(message.id) ??
                (stopped.has(message.id) ? "stopped" : undefined) ??
                (message.role === "user"
                  ? "complete"
                  : message === last && busy
                    ? "streaming"
                    : message === last && status === "error"
                      ? "error"
                      : "complete")
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
  const [stored, setStored] = useState<{ chatId: string; stored: Stored }>()
  useEffect(() => {
    let current = true
    loadStored(chatId).then((found) => {
      if (current) setStored({ chatId, stored: found })
    })
    return () => {
      current = false
    }
  }, [chatId])
  const newChat = () => {
    const created = crypto.randomUUID()
    localStorage.setItem(CHAT_KEY, created)
    setChatId(created)
  }
  if (stored?.chatId !== chatId) return <p className="note">Loading…</p>
  return <Chat key={chatId} chatId={chatId} stored={stored.stored} onNewChat={newChat} />
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>
)
