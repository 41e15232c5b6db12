/**
 * The Convoke demo page: send a message, see the conversation id the moment
 * the first event arrives (with the time it took), watch the reply stream
 * (through network drops: "reconnecting…" shows while the client resumes it),
 * stop it, and list and reopen conversations — a conversation whose reply is
 * still running (after a reload) picks the stream up again. Replies come over
 * Server-Sent Events or over one WebSocket (the transport switch, remembered
 * in `localStorage`); the page behaves the same on both. Everything goes
 * through `@convoke/client`; the page is served by the reference server, so
 * requests are same-origin (the WebSocket opens with a single-use ticket).
 */
import {
  type ChatReply,
  type ConversationSummary,
  ConvokeAbortError,
  ConvokeClient,
  ConvokeHttpError,
  ConvokeStreamError
} from "@convoke/client"
import "./style.css"

type Transport = "sse" | "websocket"

const TRANSPORT_KEY = "convoke-demo:transport"

// One client per transport; the WebSocket one opens its socket with the first reply.
const clients: Record<Transport, ConvokeClient> = {
  sse: new ConvokeClient(),
  websocket: new ConvokeClient({ transport: "websocket" })
}
let transport: Transport = localStorage.getItem(TRANSPORT_KEY) === "websocket" ? "websocket" : "sse"
/** The client of the chosen transport; the conversation API is plain HTTP on both. */
const client = () => clients[transport]

const element = <T extends HTMLElement>(id: string) => document.getElementById(id) as T
const conversationIdView = element<HTMLElement>("conversation-id")
const timingView = element<HTMLElement>("timing")
const connectionView = element<HTMLElement>("connection")
const messagesView = element<HTMLOListElement>("messages")
const listView = element<HTMLUListElement>("conversations")
const listNote = element<HTMLParagraphElement>("list-note")
const errorView = element<HTMLParagraphElement>("error")
const form = element<HTMLFormElement>("composer")
const input = element<HTMLTextAreaElement>("message")
const sendButton = element<HTMLButtonElement>("send")
const stopButton = element<HTMLButtonElement>("stop")
const newButton = element<HTMLButtonElement>("new-conversation")
const transportInputs = [...document.querySelectorAll<HTMLInputElement>('input[name="transport"]')]

let conversationId: string | undefined
let current: ChatReply | undefined

// Conversations started in this browser, shown when the server cannot list
// conversations (a store without listing support answers 5xx there).
const LOCAL_KEY = "convoke-demo:conversations"
const localConversations = (): Array<ConversationSummary> => {
  try {
    return JSON.parse(localStorage.getItem(LOCAL_KEY) ?? "[]")
  } catch {
    return []
  }
}
const rememberLocally = (summary: ConversationSummary) => {
  const rest = localConversations().filter((entry) => entry.id !== summary.id)
  localStorage.setItem(LOCAL_KEY, JSON.stringify([summary, ...rest].slice(0, 50)))
}

const showError = (message: string | undefined) => {
  errorView.hidden = message === undefined
  errorView.textContent = message ?? ""
}

const describe = (error: unknown): string =>
  error instanceof ConvokeHttpError
    ? `${error.status} ${error.type}: ${error.message}`
    : error instanceof ConvokeStreamError
      ? `The reply failed (${error.type}): ${error.message}`
      : error instanceof Error
        ? error.message
        : String(error)

const milliseconds = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`

const addMessage = (role: "user" | "assistant", text: string, state = "complete") => {
  const item = document.createElement("li")
  item.dataset.role = role
  item.dataset.state = state
  item.textContent = text
  messagesView.append(item)
  item.scrollIntoView({ block: "end" })
  return item
}

const showConversation = (id: string | undefined) => {
  conversationId = id
  conversationIdView.textContent = id ?? "none yet"
  conversationIdView.dataset.state = id === undefined ? "none" : "known"
  history.replaceState(null, "", id === undefined ? location.pathname : `#/conversations/${id}`)
  for (const item of listView.querySelectorAll("li")) {
    item.setAttribute("aria-current", String(item.dataset.id === id))
  }
}

const renderList = (conversations: ReadonlyArray<ConversationSummary>) => {
  listView.replaceChildren(
    ...conversations.map((conversation) => {
      const item = document.createElement("li")
      item.dataset.id = conversation.id
      item.setAttribute("aria-current", String(conversation.id === conversationId))
      const button = document.createElement("button")
      button.type = "button"
      button.textContent = conversation.title || "(untitled)"
      const when = document.createElement("small")
      when.textContent = new Date(conversation.updatedAt).toLocaleString()
      button.append(when)
      button.addEventListener("click", () => void openConversation(conversation.id))
      item.append(button)
      return item
    })
  )
}

const refreshList = async () => {
  try {
    const page = await client().conversations.list({ limit: 50 })
    listNote.hidden = true
    renderList(page.data)
  } catch (error) {
    listNote.hidden = false
    listNote.textContent = `The server could not list conversations (${describe(error)}); showing the ones started in this browser.`
    renderList(localConversations())
  }
}

const openConversation = async (id: string) => {
  if (current !== undefined) return
  showError(undefined)
  try {
    const conversation = await client().conversations.get(id)
    messagesView.replaceChildren()
    // A reply still running (the page was reloaded mid-reply) is followed live instead of shown as stored.
    const running = conversation.runningTurn !== null
    for (const message of conversation.messages) {
      if (!(running && message.status === "streaming"))
        addMessage(message.role, message.content, message.status)
    }
    timingView.textContent = ""
    showConversation(conversation.id)
    if (running && current === undefined) {
      const reply = await client().resume({ conversationId: conversation.id })
      if (reply !== undefined) await follow(reply, addMessage("assistant", "", "streaming"))
    }
  } catch (error) {
    showError(`Could not open the conversation: ${describe(error)}`)
  }
}

const send = async (message: string) => {
  showError(undefined)
  addMessage("user", message)
  const replyView = addMessage("assistant", "", "streaming")
  const startedAt = performance.now()
  const reply = client().chat({ message, conversationId })
  const timings: Array<string> = []
  const showTimings = () => {
    timingView.textContent = timings.join(" · ")
  }
  reply.conversationId.then(
    (id) => {
      const elapsed = performance.now() - startedAt
      timings.push(`id after ${milliseconds(elapsed)}`)
      showTimings()
      conversationIdView.dataset.elapsedMs = String(elapsed)
      const isNew = id !== conversationId
      showConversation(id)
      if (isNew) {
        const now = new Date().toISOString()
        const summary = { id, title: message.slice(0, 50), createdAt: now, updatedAt: now }
        rememberLocally(summary)
      }
    },
    () => {}
  )
  await follow(reply, replyView, {
    firstDelta: () => {
      timings.push(`first text after ${milliseconds(performance.now() - startedAt)}`)
      showTimings()
    },
    complete: () => {
      timings.push(`complete after ${milliseconds(performance.now() - startedAt)}`)
      showTimings()
    }
  })
}

/**
 * Shows a reply as it streams into `replyView`, "reconnecting…" while the
 * client resumes a dropped connection, and how it ended.
 */
const follow = async (
  reply: ChatReply,
  replyView: HTMLElement,
  on: { readonly firstDelta?: () => void; readonly complete?: () => void } = {}
) => {
  current = reply
  replyView.dataset.transport = transport
  sendButton.disabled = true
  stopButton.disabled = false
  const showState = () => {
    const reconnecting = reply.state === "reconnecting"
    connectionView.hidden = !reconnecting
    if (reconnecting) replyView.dataset.state = "reconnecting"
    else if (reply.state === "streaming") replyView.dataset.state = "streaming"
  }
  const unsubscribe = reply.onStateChange(showState)
  try {
    let first = true
    for await (const delta of reply) {
      if (first) {
        first = false
        on.firstDelta?.()
      }
      replyView.textContent += delta
      replyView.scrollIntoView({ block: "end" })
    }
    if (reply.state === "stopped") {
      replyView.dataset.state = "stopped"
    } else {
      on.complete?.()
      replyView.dataset.state = "complete"
    }
  } catch (error) {
    if (error instanceof ConvokeAbortError) {
      replyView.dataset.state = "stopped"
    } else {
      replyView.dataset.state = "error"
      showError(describe(error))
    }
  } finally {
    unsubscribe()
    connectionView.hidden = true
    current = undefined
    sendButton.disabled = false
    stopButton.disabled = true
    void refreshList()
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault()
  const message = input.value.trim()
  if (message === "" || current !== undefined) return
  input.value = ""
  void send(message)
})

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault()
    form.requestSubmit()
  }
})

stopButton.addEventListener("click", () => {
  // Ends the turn on the server too (stored as cancelled); the reply ends quietly with what arrived.
  current
    ?.stop()
    .catch((error: unknown) => showError(`Could not stop the reply on the server: ${describe(error)}`))
})

newButton.addEventListener("click", () => {
  if (current !== undefined) return
  messagesView.replaceChildren()
  timingView.textContent = ""
  showError(undefined)
  showConversation(undefined)
  input.focus()
})

for (const input of transportInputs) {
  input.checked = input.value === transport
  input.addEventListener("change", () => {
    if (!input.checked) return
    // The next reply goes over the new transport; one streaming now keeps its own.
    transport = input.value === "websocket" ? "websocket" : "sse"
    localStorage.setItem(TRANSPORT_KEY, transport)
  })
}

const fromHash = /^#\/conversations\/([\w-]+)$/.exec(location.hash)?.[1]
void refreshList()
if (fromHash !== undefined) void openConversation(fromHash)
input.focus()
