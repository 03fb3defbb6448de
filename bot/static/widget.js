/*
 * deskbot web chat widget. Embed with one tag (and an optional config object before it):
 *
 *   <script>window.deskbotConfig = { title: "Demo Shop", lang: "en", colors: { primary: "#4f46e5" } };</script>
 *   <script src="https://support.example.com/widget.js" async></script>
 *
 * Plain JavaScript, no build step, no dependencies. It lives in a shadow root so the host page's CSS
 * cannot reach it, talks to the bot over a WebSocket (/api/ws) and falls back to HTTP (POST
 * /api/chat, polling the history for agent replies) when the socket is blocked. Message text only
 * ever reaches the page through text nodes: the Markdown subset is built element by element, so
 * HTML in a message is shown as typed and never parsed.
 */
(() => {
  "use strict";

  // --- the safe Markdown subset: paragraphs, lists, **bold**, *italic*, `code`, links -----------

  const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:", "tel:"]);
  const INLINE = new RegExp(
    [
      String.raw`\[([^\]\n]+)\]\(([^()\s]+)\)`, // [text](url)
      String.raw`\*\*(?=\S)([^*\n]*?\S)\*\*`, // **bold**
      String.raw`\*(?=[^\s0-9０-９])([^*\n]*?[^\s0-9０-９])\*`, // *italic*, not from or to a digit: 20*30*40cm is a size
      String.raw`\x60([^\x60\n]+)\x60`, // `code`
      // a bare URL. Chinese text runs on after one without a space (…/returns。请查看, …/returns请查看), so Chinese
      // is read as the URL's only where a path's part or a query's name or value starts with it (/帮助/退货?类型=全部),
      // up to punctuation or a space; nor is the punctuation that ends the sentence (…/returns.) read as the URL's
      String.raw`(https?:\/\/(?:[^\s<>"'\u0080-\uffff]|(?<=[\/=?&#\u0080-\uffff])[^\s<>"'\x00-\x7f\u2000-\u206f\u3000-\u303f\uff00-\uffef])+(?<![.,;:!?)\]]))`,
    ].join("|"),
    "g",
  );

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function safeHref(raw) {
    try {
      const url = new URL(raw, location.href);
      return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
    } catch {
      return null;
    }
  }

  function link(text, href) {
    const a = el("a", "", text);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    return a;
  }

  function renderInline(text, parent) {
    let last = 0;
    for (const m of text.matchAll(INLINE)) {
      parent.append(text.slice(last, m.index));
      last = m.index + m[0].length;
      const [whole, linkText, linkUrl, bold, italic, code, bare] = m;
      if (linkText !== undefined) {
        const href = safeHref(linkUrl);
        parent.append(href ? link(linkText, href) : whole); // an unsafe link stays plain text
      } else if (bold !== undefined) {
        renderInline(bold, parent.appendChild(el("strong")));
      } else if (italic !== undefined) {
        renderInline(italic, parent.appendChild(el("em")));
      } else if (code !== undefined) {
        parent.append(el("code", "", code));
      } else {
        const href = safeHref(bare);
        parent.append(href ? link(bare, href) : bare);
      }
    }
    parent.append(text.slice(last));
  }

  function renderMarkdown(text) {
    const out = document.createDocumentFragment();
    let list = null;
    let paragraph = null;
    for (const line of String(text).replace(/\r\n?/g, "\n").split("\n")) {
      const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
      const numbered = /^\s*(\d{1,3})[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        const tag = bullet ? "ul" : "ol";
        paragraph = null;
        if (!list || list.tagName.toLowerCase() !== tag) {
          list = out.appendChild(el(tag));
          if (numbered && numbered[1] !== "1") list.start = Number(numbered[1]);
        }
        renderInline(bullet ? bullet[1] : numbered[2], list.appendChild(el("li")));
      } else if (!line.trim()) {
        list = paragraph = null;
      } else {
        list = null;
        if (paragraph) paragraph.append(el("br"));
        else paragraph = out.appendChild(el("p"));
        renderInline(line, paragraph);
      }
    }
    return out;
  }

  // The language a text is written in, "en" or "zh", as the server tells it (bot/language.py): links and addresses
  // aside, the script with more stretches of text wins ("用 Apple Pay 或 Google Pay 付款。" is Chinese); at a draw,
  // ``otherwise``.
  function writtenIn(text, otherwise) {
    const letters = String(text).replace(/\S*(:\/\/|@)\S*/g, " ").match(/\p{Script=Han}|[A-Za-z]/gu) || [];
    const stretches = letters.map((c) => (/[A-Za-z]/.test(c) ? "en" : "zh")).filter((s, at, all) => s !== all[at - 1]);
    const chinese = stretches.filter((script) => script === "zh").length;
    return chinese * 2 > stretches.length ? "zh" : chinese * 2 < stretches.length ? "en" : otherwise;
  }

  // The agents' console loads this script for its Markdown alone (data-deskbot="markdown"), to show the bot's and
  // the agents' messages as the chat draws them, and each in its language: no chat, no conversation id, no request.
  if (document.currentScript && document.currentScript.dataset.deskbot === "markdown") {
    window.deskbotMarkdown = renderMarkdown;
    window.deskbotWrittenIn = writtenIn;
    return;
  }

  // Included twice, or run again by a site (Turbo, a single-page app) that replaced the body the widget was in:
  // the first one stays, and is put back on the page.
  if (window.Deskbot) {
    warnOfAnotherBot(document.currentScript);
    if (window.Deskbot.attach) window.Deskbot.attach();
    return;
  }

  // A second bot's widget.js (another server's) is not started: a page has one chat, whose window.Deskbot and place
  // on the page are its own. Said in the console, naming both, as the other chat's absence went unexplained.
  function warnOfAnotherBot(current) {
    if (!current || !current.src) return;
    const folder = (src) => new URL(".", src).href; // a server's, as the widget reads it: a query is the same one's
    const first = [...document.scripts].map((tag) => tag.src)
      .find((src) => /\/widget\.js(?:[?#]|$)/.test(src) && folder(src) !== folder(current.src));
    if (first) {
      console.warn(`deskbot: ${current.src} is not started, as this page already has the chat of ${first}: ` +
        "a page shows one bot's chat (docs/channels.md).");
    }
  }

  const script = document.currentScript;
  const config = Object.assign({}, window.deskbotConfig || {});

  const STRINGS = {
    en: {
      title: "Support",
      subtitle: "Usually replies in seconds",
      subtitleAgent: "A person is helping you",
      greeting: "Hi! How can I help you today?",
      open: "Open chat",
      openUnread: (n) => `Open chat (${n} new message${n === 1 ? "" : "s"})`,
      openTakenOver: "Open chat (a person has joined)",
      close: "Close chat",
      messages: "Messages",
      placeholder: "Type your message…",
      inputLabel: "Message",
      send: "Send",
      typing: "Typing…",
      you: "You",
      bot: "Bot",
      agent: "Agent",
      suggestions: "Suggested replies",
      feedback: "Was this helpful?",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      thanks: "Thanks for your feedback!",
      whatWrong: "What was wrong? (optional)",
      sendComment: "Send",
      // True while the customer waits for a person as well as once one has joined (the Chinese says the same).
      handedOff: "You've been passed to a person. They'll reply here.",
      handedOffTo: (name) => `You're now chatting with ${name}.`,
      handedBack: "You're back with the bot.",
      backToBot: "Back to the bot",
      error: "Something went wrong. Please try again.",
      notSent: "Not sent.",
      tooFast: "Not sent: too many messages. Wait {seconds} s, then retry.",
      tooLong: "Too long: {max} characters at most. Shorten it, then send.",
      // Why a message was not sent, by the bot's ``code`` (bot/openapi.py's ErrorCode; text_too_long says tooLong)
      refused: {
        busy: "Not sent: the chat is busy. Retry in a moment.",
        stopping: "Not sent: the chat is restarting. Retry in a moment.",
        store_unwritable: "Not sent: the chat cannot keep messages just now. Retry in a moment.",
        store_damaged: "Not sent: the chat is out of order. Please try again later.",
        internal: "Not sent: something went wrong. Retry in a moment.",
        text_invalid: "Not sent: there is nothing to read in it.",
      },
      retry: "Retry",
      newMessages: "New messages",
      poweredBy: "Powered by deskbot",
    },
    zh: {
      title: "在线客服",
      subtitle: "通常几秒内回复",
      subtitleAgent: "人工客服正在为您服务",
      greeting: "您好！请问有什么可以帮您？",
      open: "打开聊天",
      openUnread: (n) => `打开聊天（${n} 条新消息）`,
      openTakenOver: "打开聊天（人工客服已接入）",
      close: "关闭聊天",
      messages: "消息",
      placeholder: "请输入您的问题…",
      inputLabel: "消息",
      send: "发送",
      typing: "正在输入…",
      you: "我",
      bot: "机器人",
      agent: "人工客服",
      suggestions: "推荐回复",
      feedback: "这个回答有帮助吗？",
      helpful: "有帮助",
      notHelpful: "没有帮助",
      thanks: "感谢您的反馈！",
      whatWrong: "哪里有问题？（选填）",
      sendComment: "发送",
      handedOff: "已为您转接人工客服，客服会在这里回复您。",
      handedOffTo: (name) => `客服 ${name} 为您服务`,
      handedBack: "已回到机器人服务。",
      backToBot: "返回机器人",
      error: "出错了，请稍后再试。",
      notSent: "未发送。",
      tooFast: "未发送：消息太频繁，请等待 {seconds} 秒后重试。",
      tooLong: "消息太长：最多 {max} 个字。请删减后再发送。",
      refused: {
        busy: "未发送：客服系统繁忙，请稍后重试。",
        stopping: "未发送：客服系统正在重启，请稍后重试。",
        store_unwritable: "未发送：暂时无法保存消息，请稍后重试。",
        store_damaged: "未发送：聊天服务暂时不可用，请稍后再试。",
        internal: "未发送：出错了，请稍后重试。",
        text_invalid: "未发送：消息没有可读的内容。",
      },
      retry: "重试",
      newMessages: "有新消息",
      poweredBy: "由 deskbot 提供支持",
    },
    "zh-Hant": {  // Traditional characters (Taiwan's forms; HONG_KONG below), for pages in zh-TW, zh-HK, zh-MO or zh-Hant
      title: "在線客服",
      subtitle: "通常幾秒內回覆",
      subtitleAgent: "人工客服正在為您服務",
      greeting: "您好！請問有什麼可以幫您？",
      open: "打開聊天",
      openUnread: (n) => `打開聊天（${n} 條新消息）`,
      openTakenOver: "打開聊天（人工客服已接入）",
      close: "關閉聊天",
      messages: "消息",
      placeholder: "請輸入您的問題…",
      inputLabel: "消息",
      send: "發送",
      typing: "正在輸入…",
      you: "我",
      bot: "機器人",
      agent: "人工客服",
      suggestions: "推薦回覆",
      feedback: "這個回答有幫助嗎？",
      helpful: "有幫助",
      notHelpful: "沒有幫助",
      thanks: "感謝您的反饋！",
      whatWrong: "哪裡有問題？（選填）",
      sendComment: "發送",
      handedOff: "已為您轉接人工客服，客服會在這裡回覆您。",
      handedOffTo: (name) => `客服 ${name} 為您服務`,
      handedBack: "已回到機器人服務。",
      backToBot: "返回機器人",
      error: "出錯了，請稍後再試。",
      notSent: "未發送。",
      tooFast: "未發送：消息太頻繁，請等待 {seconds} 秒後重試。",
      tooLong: "消息太長：最多 {max} 個字。請刪減後再發送。",
      refused: {
        busy: "未發送：客服系統繁忙，請稍後重試。",
        stopping: "未發送：客服系統正在重新啟動，請稍後重試。",
        store_unwritable: "未發送：暫時無法儲存消息，請稍後重試。",
        store_damaged: "未發送：聊天服務暫時無法使用，請稍後再試。",
        internal: "未發送：出錯了，請稍後重試。",
        text_invalid: "未發送：消息沒有可讀的內容。",
      },
      retry: "重試",
      newMessages: "有新消息",
      poweredBy: "由 deskbot 提供支持",
    },
  };
  // Where Hong Kong's Traditional forms (OpenCC's s2hk), which a zh-HK or zh-MO page reads, differ from Taiwan's.
  const HONG_KONG = { handedOff: "已為您轉接人工客服，客服會在這裏回覆您。" };

  // The widget speaks the embedding page's chosen language, else a bot's one language (known once
  // /api/widget answers: label() runs again), else the page's or the browser's.
  // not "constructor", which every object has (Object.hasOwn is missing from the Safari of 2021)
  const known = (name) => Object.prototype.hasOwnProperty.call(STRINGS, name);
  // A language tag read as the widget's own language: "zh-CN" is Chinese, "en-GB" English, and "zh-TW", "zh-HK"
  // or "zh-Hant" Chinese in Traditional characters, as the bot answers customers who write them.
  const language = (tag) => {
    const [base, ...rest] = String(tag || "").toLowerCase().split(/[-_]/);
    if (base === "zh" && !rest.includes("hans") && rest.some((part) => ["hant", "tw", "hk", "mo"].includes(part))) {
      return "zh-Hant";
    }
    return known(base) ? base : null;
  };
  const spoken = () => lang.split("-")[0]; // what the bot is told: en or zh, and a Traditional page's script
  // The shop's own id for a signed-in customer, stored with each message, so that `bot purge --user` finds them.
  // One the server refuses (ChatRequest.user: a string of up to 128 characters, counted as code points, none of them
  // invisible or a control character: its pattern, which GET /api/widget gives as user_id) had every message of that
  // customer refused, and the chat dead: it is left out, and the page's developer told once.
  // ``customer``: deskbotConfig, or what Deskbot.identify() or Deskbot.reset() was given.
  let userIdPattern = null; // until /api/widget answers, which messages and the socket's join wait for
  function userOf(customer) {
    const id = typeof customer.user === "number" && Number.isFinite(customer.user) ? String(customer.user) : customer.user;
    if (id == null) return {};
    // userHash: the shop's server's HMAC of the id, which a bot with channels.web.identity_secret checks.
    if (typeof id === "string" && [...id].length <= 128 && (!userIdPattern || userIdPattern.test(id))) {
      return customer.userHash == null ? { user: id } : { user: id, user_hash: customer.userHash };
    }
    console.error("deskbot: deskbotConfig.user is left out of the messages, so bot purge --user will not find this " +
      "customer's chats: it must be a string (or number) of up to 128 characters, none of them invisible or a " +
      "control character.");
    return {};
  }
  // What the page knows of its customer (a user id, a plan), sent with each message as Rasa's REST channel takes it,
  // for custom actions to read (the first message's as the slot session_started_metadata). One the server refuses
  // (ChatRequest.metadata) would have every message refused too: it is left out, and the page's developer told once.
  function metadataOf(customer) {
    const given = customer.metadata;
    if (given == null) return {};
    const length = (text) => [...text].length; // in code points, as the server counts
    const fits = (v) => v === null || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v)) ||
      (typeof v === "string" && length(v) <= 256);
    const entries = typeof given === "object" && !Array.isArray(given) ? Object.entries(given) : null;
    if (entries && entries.length <= 16 && entries.every(([k, v]) => length(k) >= 1 && length(k) <= 64 && fits(v))) {
      return { metadata: given };
    }
    console.error("deskbot: deskbotConfig.metadata is left out of the messages, so custom actions will not see it: " +
      "it must be an object of up to 16 keys of up to 64 characters, each a string of up to 256 characters, a " +
      "number, a boolean or null.");
    return {};
  }
  let user = {};
  let metadata = {};
  let named = {}; // the customer as the page last gave them, read again once the id's pattern is known
  // Who the customer is, for a single-page shop that signs its customers in and out without loading a page
  function identify(customer) {
    const given = customer && typeof customer === "object" ? customer : {};
    named = given;
    user = userOf(given);
    metadata = metadataOf(given);
  }
  identify(config);
  // A signed-in customer's conversation is read with their proof, as their messages carry it: without it the
  // server refuses it (docs/security.md). A visitor's is read with its id alone. Both in headers, not in the URL,
  // which proxies and access logs keep: whoever read the id or the hash there could read the customer's chats, and
  // write in a visitor's as them.
  function readHistory() {
    const proof = user.user_hash ? { "X-Deskbot-User": encodeURIComponent(user.user), "X-Deskbot-User-Hash": user.user_hash } : {};
    return api("GET", "/api/conversations/history", undefined, { "X-Deskbot-Conversation": conversationId, ...proof });
  }
  const customerId = () => user.user ?? null; // who this tab's customer is: null for a visitor
  const told = () => ({ ...user, ...metadata, ...(lang === "zh-Hant" ? { language: "zh", script: chineseScript } : { language: spoken() }) });
  const chosenLang = language(config.lang);
  const pageTag = chosenLang ? config.lang : document.documentElement.lang || navigator.language;
  let lang = chosenLang || language(pageTag) || "en";
  // A Traditional page's script: Hong Kong's and Macau's read Hong Kong's forms (後台, 裏面), the others Taiwan's.
  const scriptOf = (tag) => (/[-_](hk|mo)(?![a-z])/i.test(String(tag || "")) ? "hongkong" : "traditional");
  let chineseScript = scriptOf(pageTag);
  // The widget's own texts in a language, in Hong Kong's forms for a Hong Kong page in Traditional characters.
  const strings = (name) => (name === "zh-Hant" && chineseScript === "hongkong" ? { ...STRINGS[name], ...HONG_KONG }
    : STRINGS[name]);
  let t = strings(lang);
  let serverTitle = null; // bot.yml's channels.web.title: one text, or one per language
  let serverTitleTraditional = {}; // its Chinese one in Traditional characters, by script: Taiwan's, Hong Kong's forms
  let botLanguage = null; // bot.yml's language (en, zh or multi), once /api/widget answers
  // By default the folder widget.js was loaded from, path and all: behind a proxy that maps
  // https://shop.example/support/ to the bot, its API is under /support too.
  const server = String(config.server || (script && script.src ? new URL(".", script.src).href : location.origin)).replace(/\/+$/, "");
  const pollInterval = Math.max(250, Number(config.pollInterval) || 4000);
  const useSocket = config.transport !== "http" && "WebSocket" in window;
  const SOCKET_WAIT_MS = 4000; // how long a message waits for a connecting socket before using HTTP
  // A socket closed by a server that stops (1012) or is not ready (1013) connects again, elsewhere, within
  // RECONNECT_SPREAD_MS more than its usual pause
  const RECONNECT_ELSEWHERE = [1012, 1013];
  const STOPPED = 1012;
  const RECONNECT_SPREAD_MS = 4500;
  const HTTP_ORDER_WAIT_MS = 5000; // how long a message over HTTP waits for the one before it to be answered (chat())
  // How long a message waits for its answer on an open socket before the socket counts as dead: a phone
  // that changes networks leaves it open on both ends, and the message waited with the dots for good.
  const REPLY_WAIT_MS = 20000;
  const CONNECTING = 0;
  const OPEN = 1;

  // --- storage: the conversation id survives reloads; nothing breaks where storage is blocked ----

  const storageKey = `deskbot:${server}`;
  // The browser's storage (read as ``storage()``, which throws where it is blocked), else this page's memory.
  function storeIn(storage) {
    const memory = {};
    return {
      get(key) {
        try { return storage().getItem(`${storageKey}:${key}`); } catch { return memory[key] ?? null; }
      },
      set(key, value) {
        try { storage().setItem(`${storageKey}:${key}`, value); } catch { memory[key] = value; }
      },
      // The object kept as JSON under ``key``, else ``fallback``: what another script of the site (or a hand in the
      // developer tools) left there must not stop the chat from starting.
      json(key, fallback) {
        try {
          const value = JSON.parse(this.get(key));
          return value !== null && typeof value === "object" && !Array.isArray(value) ? value : fallback;
        } catch { return fallback; }
      },
    };
  }
  const store = storeIn(() => localStorage); // the site's tabs share it
  const tabStore = storeIn(() => sessionStorage); // this tab's alone, kept through a reload
  // This tab's identity, kept through a reload, marked ``open`` while its page is. A duplicated tab (or one a page
  // opened with its opener) starts with a copy of the tab's sessionStorage, which the page still showing it marks
  // open: it takes an identity of its own, and leaves the messages the other has out to it. Sharing them, it showed
  // the other's message as its own, with the typing dots for a minute after that tab said Not sent, and named its
  // messages in the site's shared list as that tab's.
  const TAB = "tab";
  const keptTab = tabStore.json(TAB, {});
  const duplicate = keptTab.open === true;
  const tabId = !duplicate && typeof keptTab.id === "string" ? keptTab.id : randomId();
  if (duplicate) tabStore.set("out", "{}");
  const markTab = (open) => tabStore.set(TAB, JSON.stringify({ id: tabId, open }));
  markTab(true);
  window.addEventListener("pagehide", () => markTab(false)); // a reload, or the page left: the next page is this tab's
  window.addEventListener("pageshow", (event) => { if (event.persisted) markTab(true); }); // back from the cache

  function randomId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  const newConversationId = () => `web-${randomId()}`;

  // The conversation the site's tabs share, as kept: with the customer whose conversation the tab that started it
  // left (``left``) and the one it started it for (``user``), null for a visitor, and the conversation it left as a
  // signed-in customer's sign-in in another tab closed it to it (``from``), else null; a plain id is a visitor's.
  function sharedConversation(kept) {
    try {
      const { id, left = null, user = null, from = null } = JSON.parse(kept);
      if (typeof id === "string") return { id, left, user, from };
    } catch {
      // an id alone
    }
    return { id: kept, left: null, user: null, from: null };
  }
  // The conversation a page opens on: the site's tabs', but a signed-in customer's own (``signed-in``, kept as it is
  // answered), which a visitor's tab of the site that started a conversation since would have taken from their view.
  function keptConversation() {
    const theirs = store.json("signed-in", null);
    if (theirs && user.user_hash && theirs.user === customerId()) return theirs.id;
    return store.get("conversation") && sharedConversation(store.get("conversation")).id;
  }
  let conversationId = keptConversation();
  if (!conversationId) {
    conversationId = newConversationId();
    store.set("conversation", conversationId);
  }

  // Titles of clicked buttons, so that a payload such as "/handoff" reads as its title after a reload and in
  // another tab: read afresh each time, as another tab may have saved one since. No prototype: a message
  // that reads "constructor" must not find Object's.
  function savedTitles() {
    return Object.assign(Object.create(null), store.json("titles", {}));
  }
  const shownAs = (text) => savedTitles()[text] || text;
  function rememberTitle(payload, title) {
    const titles = savedTitles();
    titles[payload] = title;
    const keys = Object.keys(titles);
    if (keys.length > 50) delete titles[keys[0]];
    store.set("titles", JSON.stringify(titles));
  }

  // --- look ---------------------------------------------------------------------------------------

  const colors = Object.assign({}, config.colors || {});

  // A site's brand colour is often light (a yellow, a mint): white text on it, and it as text on white, could not
  // be read (1.3:1 for #fde047, where WCAG asks 4.5:1). As Intercom and Zendesk do, the text on it is white or dark,
  // whichever reads better, unless the site sets onPrimary; where it is text on the background (a choice's title,
  // Retry) it is darkened, or lightened on a dark background (the default one's too), until it reads.
  // A CSS colour as [r, g, b] (0-255), parsed by a canvas, which reads any CSS colour; null for one it cannot
  // read or a translucent one (its canvas form is then rgba()): those keep the defaults.
  function rgbOf(value) {
    const canvas = document.createElement("canvas").getContext("2d");
    if (!canvas || typeof value !== "string") return null;
    const parsed = ["#000000", "#ffffff"].map((before) => {
      canvas.fillStyle = before;
      canvas.fillStyle = value; // a colour it cannot read leaves the one before
      return canvas.fillStyle;
    });
    const hex = parsed[0] === parsed[1] && /^#([0-9a-f]{6})$/i.exec(parsed[0]);
    return hex ? [0, 2, 4].map((at) => parseInt(hex[1].slice(at, at + 2), 16)) : null;
  }
  const luminance = (rgb) => rgb.map((c) => c / 255).map((c) => (c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, at) => sum + c * [0.2126, 0.7152, 0.0722][at], 0);
  const contrast = (a, b) => {
    const [lighter, darker] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (lighter + 0.05) / (darker + 0.05);
  };
  const css = (rgb) => `rgb(${rgb.map(Math.round).join(" ")})`;
  const WHITE = [255, 255, 255];
  const DARK = [28, 31, 43]; // --deskbot-text's default
  const readableOn = (color) => (contrast(color, WHITE) >= contrast(color, DARK) ? WHITE : DARK);
  // The CSS variables derived from ``given`` (the colours in use), over the defaults
  function derive(given) {
    const derived = {};
    const brand = rgbOf(given.primary) || [79, 70, 229]; // --deskbot-primary's default
    const onBrand = readableOn(brand);
    if (typeof given.onPrimary !== "string") derived["--deskbot-on-primary"] = css(onBrand);
    // The customer's bubbles in a colour of their own (userBubble, often a light tint) take the text that reads on it.
    const userBubble = rgbOf(given.userBubble);
    if (userBubble) derived["--deskbot-on-user-bubble"] = css(readableOn(userBubble));
    // The header's gradient goes away from its text: darker under white text, lighter under dark.
    derived["--deskbot-shade"] = onBrand === WHITE ? "#000" : "#fff";
    const background = rgbOf(given.background) || WHITE;
    const away = luminance(background) > 0.18 ? [0, 0, 0] : WHITE;
    // The browser's own parts (a scrollbar, the caret, spelling marks) in the colours of the chat's background: a
    // dark theme's chat had a light scrollbar
    derived["--deskbot-scheme"] = away === WHITE ? "dark" : "light";
    let accent = brand;
    for (let share = 0.9; contrast(accent, background) < 4.5 && share >= 0; share -= 0.1) {
      accent = brand.map((c, at) => c * share + away[at] * (1 - share));
    }
    derived["--deskbot-accent"] = css(accent);
    return derived;
  }
  // The dark palette, for a customer whose device asks for dark colours (prefers-color-scheme) or a site that sets
  // theme: "dark": the chat was white on a dark page and a dark system. A site that gives its own background or
  // text has chosen its palette, and "light" keeps the light one.
  // ``styled``: the colours the page's stylesheet gives (pageColors()), which count as the config's do, and win.
  const DARK_COLORS = { background: "#111827", text: "#f3f4f6" };
  const darkScheme = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const THEMES = ["auto", "light", "dark"];
  let theme = THEMES.includes(config.theme) ? config.theme : "auto"; // Deskbot.setTheme() changes it
  function palette(styled) {
    const own = { ...colors, ...styled };
    const followsScheme = theme === "auto" && own.background == null && own.text == null;
    return theme === "dark" || (followsScheme && darkScheme && darkScheme.matches) ? { ...DARK_COLORS, ...own } : own;
  }
  // A site with its own dark-mode toggle switches the chat with it: the chat followed the device alone.
  function setTheme(name) {
    if (!THEMES.includes(name)) {
      console.error(`deskbot: Deskbot.setTheme(${JSON.stringify(name)}) is ignored: it takes "auto", "light" or "dark".`);
      return;
    }
    theme = name;
    paint();
  }
  const COLOR_VARS = {
    primary: "--deskbot-primary",
    onPrimary: "--deskbot-on-primary",
    background: "--deskbot-bg",
    text: "--deskbot-text",
    botBubble: "--deskbot-bot-bubble",
    userBubble: "--deskbot-user-bubble",
  };

  // 0 is a stacking order a site may ask for (under its own overlays, a cookie banner), not an unset option.
  const zIndex = config.zIndex != null && config.zIndex !== "" && Number.isFinite(Number(config.zIndex))
    ? Math.round(Number(config.zIndex)) : 2147483000;
  // The page's rules reach the host div, which no :host rule outweighs: "all: initial" at the root keeps what
  // it inherits (* { letter-spacing: 3px; text-transform: uppercase }) out of the chat.
  const CSS = `
    :host { all: initial; }
    .root {
      /* "all" leaves the direction, which a right-to-left page's (Arabic, Hebrew) reached the chat: its languages read
         left to right, and the customer's messages stood on the left, Send left of the box. A message or the box in
         such a script still reads right to left (dir="auto"). */
      all: initial; direction: ltr;
      --deskbot-primary: #4f46e5; --deskbot-on-primary: #ffffff; --deskbot-bg: #ffffff; --deskbot-text: #1c1f2b;
      --deskbot-accent: var(--deskbot-primary); --deskbot-shade: #000; /* the brand colour as text, and what its gradient goes to */
      /* Greys of the text on the background, which a site's dark theme (background and text) turns with them: the
         muted text reads at 4.5:1 and over on the notices' grey and the bot's bubbles, as on the background */
      --deskbot-muted: color-mix(in srgb, var(--deskbot-text) 68%, var(--deskbot-bg));
      --deskbot-bot-bubble: color-mix(in srgb, var(--deskbot-text) 6%, var(--deskbot-bg)); --deskbot-user-bubble: var(--deskbot-primary);
      --deskbot-border: rgba(20, 24, 40, 0.08); --deskbot-radius: 18px; color-scheme: var(--deskbot-scheme);
      /* A control's edge (the message box's), at WCAG's 3:1 on either palette: the faint --deskbot-border read 1.2:1 */
      --deskbot-edge: color-mix(in srgb, var(--deskbot-text) 55%, var(--deskbot-bg));
      font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "PingFang SC", "Hiragino Sans GB",
        "Microsoft YaHei", "Noto Sans CJK SC", sans-serif;
      color: var(--deskbot-text); position: fixed; right: 20px; z-index: ${zIndex};
      display: flex; flex-direction: column; align-items: flex-end; gap: 14px;
      /* The height the customer sees, and what covers the page's bottom (fitView() sets both from the visual viewport
         where there is one): on a phone 100vh is the height without the browser's toolbar, and the on-screen keyboard
         covers the layout viewport's bottom, so the message box was under the one or the other. */
      --deskbot-view: 100vh; --deskbot-covered: 0px; bottom: calc(20px + var(--deskbot-covered));
    }
    @supports (height: 100dvh) { .root { --deskbot-view: 100dvh; } }
    .root.left { right: auto; left: 20px; align-items: flex-start; }
    * { box-sizing: border-box; }
    button { font: inherit; cursor: pointer; }
    .sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
    /* The keyboard's place in the brand colour, solid: at 45% it read 2:1 on white and vanished on the header, which
       is the brand colour itself (WCAG asks 3:1 of a focus ring). */
    :focus-visible { outline: 2px solid var(--deskbot-accent); outline-offset: 2px; }
    header :focus-visible { outline-color: var(--deskbot-on-primary); }

    .launcher {
      width: 60px; height: 60px; border-radius: 50%; border: 0; background: var(--deskbot-primary);
      color: var(--deskbot-on-primary); display: grid; place-items: center; position: relative;
      box-shadow: 0 10px 30px rgba(20, 24, 40, 0.25); transition: transform .18s ease;
    }
    .launcher:hover { transform: scale(1.06); }
    .launcher svg { width: 28px; height: 28px; }
    .launcher .badge { position: absolute; top: 6px; right: 6px; width: 12px; height: 12px; border-radius: 50%;
      background: #ef4444; border: 2px solid var(--deskbot-bg); }

    .panel {
      width: min(380px, calc(100vw - 40px)); height: min(620px, calc(var(--deskbot-view) - 110px));
      background: var(--deskbot-bg); border-radius: 20px; overflow: hidden; display: flex; flex-direction: column;
      box-shadow: 0 24px 60px rgba(20, 24, 40, 0.22), 0 2px 8px rgba(20, 24, 40, 0.08);
      border: 1px solid var(--deskbot-border); animation: rise .22s ease-out;
    }
    .panel[hidden] { display: none; }
    @keyframes rise { from { opacity: 0; transform: translateY(12px) scale(.98); } }

    header {
      display: flex; align-items: center; gap: 12px; padding: 16px 16px 16px 18px;
      background: linear-gradient(135deg, var(--deskbot-primary), color-mix(in srgb, var(--deskbot-primary) 70%, var(--deskbot-shade)));
      color: var(--deskbot-on-primary);
    }
    .avatar { width: 40px; height: 40px; border-radius: 50%; display: grid; place-items: center; flex: none;
      background: color-mix(in srgb, var(--deskbot-on-primary) 20%, transparent); }
    .avatar svg { width: 22px; height: 22px; }
    .heading { flex: 1; min-width: 0; }
    /* The title wraps, a long word too, rather than end in "…" (WCAG's reflow): at 200% zoom a phone has 180 px. */
    h2 { margin: 0; font-size: 16px; font-weight: 650; overflow-wrap: anywhere; }
    .subtitle { margin: 2px 0 0; font-size: 12.5px; opacity: .85; display: flex; align-items: center; gap: 6px; }
    .subtitle::before { content: ""; width: 7px; height: 7px; border-radius: 50%; background: #4ade80; }
    .close { border: 0; background: transparent; color: inherit; width: 36px; height: 36px; border-radius: 50%;
      display: grid; place-items: center; opacity: .85; }
    .close:hover { background: color-mix(in srgb, var(--deskbot-on-primary) 18%, transparent); opacity: 1; }
    .close svg { width: 20px; height: 20px; }

    /* Where its text and its button do not fit side by side (a phone zoomed to 200%), the button goes below the text:
       it ran past the chat's edge, cut. */
    .banner { display: flex; flex-wrap: wrap; align-items: center; gap: 10px; padding: 10px 16px; font-size: 13px;
      background: #fff7e6; color: #7a4b00; border-bottom: 1px solid #f5e0b5; }
    .banner[hidden] { display: none; }
    .banner span { flex: 1; }
    .banner button { border: 1px solid #e2c27d; background: #fff; color: #7a4b00; border-radius: 999px;
      padding: 4px 10px; font-size: 12.5px; white-space: nowrap; }

    /* Scrolled on past their end, the messages (and the choices, the banner) leave the page behind where it was: it
       scrolled instead, and the customer lost their place on the shop's page. */
    .scroll, .quick, .banner { overscroll-behavior: contain; }
    .scroll { flex: 1; overflow-y: auto; padding: 18px 16px 8px; scroll-behavior: smooth; }
    .log { display: flex; flex-direction: column; gap: 10px; }
    .msg { display: flex; flex-direction: column; max-width: 85%; animation: pop .18s ease-out; }
    @keyframes pop { from { opacity: 0; transform: translateY(4px); } }
    .msg.user { align-self: flex-end; align-items: flex-end; }
    .msg.bot, .msg.agent { align-self: flex-start; }
    .sender { font-size: 11.5px; color: var(--deskbot-muted); margin: 0 0 3px 10px; font-weight: 600;
      overflow-wrap: anywhere; } /* an agent named with one long word wraps: the list scrolled sideways on a phone */
    .bubble { padding: 10px 14px; border-radius: var(--deskbot-radius); overflow-wrap: anywhere; }
    .bubble + .bubble { margin-top: 6px; }
    .bubble p { margin: 0; }
    .bubble p + p, .bubble p + ul, .bubble p + ol, .bubble ul + p, .bubble ol + p { margin-top: 8px; }
    .bubble ul, .bubble ol { margin: 4px 0; padding-left: 20px; }
    .bubble a { color: inherit; text-decoration: underline; text-underline-offset: 2px; }
    .bubble code { font: 13px ui-monospace, SFMono-Regular, Menlo, monospace; padding: 1px 4px; border-radius: 4px;
      background: rgba(20, 24, 40, 0.07); }
    .user .bubble { background: var(--deskbot-user-bubble); color: var(--deskbot-on-user-bubble, var(--deskbot-on-primary));
      border-bottom-right-radius: 6px; white-space: pre-wrap; }
    .bot .bubble { background: var(--deskbot-bot-bubble); border-bottom-left-radius: 6px; }
    .agent .bubble { background: color-mix(in srgb, #22c55e 12%, var(--deskbot-bg)); border-bottom-left-radius: 6px;
      border: 1px solid color-mix(in srgb, #22c55e 30%, var(--deskbot-bg)); }
    .agent .sender { color: color-mix(in srgb, #1d7a46 60%, var(--deskbot-text)); }
    .failed .bubble { opacity: .6; }
    .status-line { font-size: 12px; color: color-mix(in srgb, #b42318 60%, var(--deskbot-text)); margin-top: 4px;
      display: flex; gap: 6px; align-items: center; }
    /* At least 24 × 24 px under a mouse too (WCAG 2.2's target size): a word of 12 px type was 17 px tall */
    .status-line button { border: 0; background: none; color: var(--deskbot-accent); font-weight: 600; padding: 0;
      font-size: 12px; text-decoration: underline; min-width: 24px; min-height: 24px; }
    .notice { align-self: center; font-size: 12.5px; color: var(--deskbot-muted); background: rgba(20, 24, 40, 0.05);
      padding: 5px 12px; border-radius: 999px; text-align: center; max-width: 90%; }

    .feedback { display: flex; align-items: center; gap: 2px; margin: 4px 0 0 4px; min-height: 26px; }
    .feedback button { border: 0; background: transparent; color: var(--deskbot-muted); width: 28px; height: 26px;
      border-radius: 8px; display: grid; place-items: center; transition: all .15s; }
    .feedback button:hover { background: rgba(20, 24, 40, 0.06); }
    .feedback button[aria-pressed="true"] { color: var(--deskbot-accent);
      background: color-mix(in srgb, var(--deskbot-primary) 12%, transparent); }
    .feedback svg { width: 15px; height: 15px; }
    /* The thumb pressed is filled, not told by its colour alone, which a contrast theme or colour blindness takes */
    .feedback button[aria-pressed="true"] svg { fill: currentColor; }
    .feedback .thanks { font-size: 11.5px; color: var(--deskbot-muted); margin-left: 6px; }
    form.comment { flex-wrap: wrap; align-items: center; gap: 6px; padding: 4px 0 0 4px; border-top: 0; }
    .comment label { flex-basis: 100%; font-size: 11.5px; color: var(--deskbot-muted); }
    .comment input { flex: 1; min-width: 0; border: 1px solid var(--deskbot-border); border-radius: 10px; padding: 6px 10px;
      font: inherit; font-size: 16px; color: var(--deskbot-text); background: var(--deskbot-bg); } /* under 16 px, iOS zooms */
    .comment button { border: 0; border-radius: 10px; padding: 8px 12px; font: inherit; font-size: 13px;
      background: var(--deskbot-primary); color: var(--deskbot-on-primary); }

    .jump { position: sticky; bottom: 4px; display: block; margin: 8px auto 0; border: 0; border-radius: 999px;
      padding: 6px 14px; font-size: 13px; background: var(--deskbot-primary); color: var(--deskbot-on-primary);
      box-shadow: 0 4px 14px rgba(20, 24, 40, 0.2); }
    /* The arrow is seen, not said: in the button's text a screen reader read "New messages down arrow" */
    .jump::after { content: " ↓" / ""; }
    .jump[hidden] { display: none; }
    .typing { display: flex; align-items: center; gap: 8px; margin-top: 10px; }
    .typing[hidden] { display: none; }
    .dots { display: inline-flex; gap: 4px; padding: 12px 14px; background: var(--deskbot-bot-bubble);
      border-radius: var(--deskbot-radius); border-bottom-left-radius: 6px; }
    .dots i { width: 7px; height: 7px; border-radius: 50%; background: var(--deskbot-muted); animation: blink 1.2s infinite; }
    .dots i:nth-child(2) { animation-delay: .2s; } .dots i:nth-child(3) { animation-delay: .4s; }
    @keyframes blink { 0%, 60%, 100% { opacity: .25; transform: translateY(0); } 30% { opacity: 1; transform: translateY(-3px); } }

    .quick { display: flex; flex-wrap: wrap; gap: 8px; padding: 4px 16px 10px; justify-content: flex-end;
      max-height: 30%; overflow-y: auto; flex-shrink: 0; } /* choices scroll rather than push the input out */
    .quick:empty { display: none; }
    .quick button { border: 1.5px solid var(--deskbot-accent); color: var(--deskbot-accent); background: var(--deskbot-bg);
      border-radius: 999px; padding: 6px 14px; font-size: 13.5px; transition: all .15s;
      overflow-wrap: anywhere; } /* a long address wraps: it ran past the chat's left edge, out of reach */
    .quick button:hover { background: var(--deskbot-primary); color: var(--deskbot-on-primary); }

    form { display: flex; align-items: flex-end; gap: 8px; padding: 10px 12px 12px; border-top: 1px solid var(--deskbot-border);
      flex-shrink: 0; }
    textarea { flex: 1; resize: none; border: 1px solid var(--deskbot-edge); color: var(--deskbot-text);
      background: color-mix(in srgb, var(--deskbot-text) 3%, var(--deskbot-bg));
      border-radius: 14px; padding: 10px 14px; font: inherit; max-height: 120px; min-height: 42px;
      font-size: 16px; } /* under 16 px, iOS zooms the page into the box */
    textarea::placeholder { color: var(--deskbot-muted); opacity: 1; } /* the browser's grey read 4.3:1, under WCAG's 4.5 */
    textarea:focus { border-color: color-mix(in srgb, var(--deskbot-primary) 60%, transparent); background: var(--deskbot-bg); }
    .send { width: 42px; height: 42px; border-radius: 50%; border: 0; background: var(--deskbot-primary);
      color: var(--deskbot-on-primary); display: grid; place-items: center; flex: none; transition: opacity .15s; }
    .send:disabled { opacity: .4; cursor: default; }
    .send svg { width: 18px; height: 18px; }
    footer { text-align: center; font-size: 11px; color: var(--deskbot-muted); padding: 0 0 8px; }

    @media (max-width: 480px) {
      .root { bottom: calc(12px + var(--deskbot-covered)); right: 12px; } .root.left { left: 12px; }
      .panel { width: calc(100vw - 24px); height: calc(var(--deskbot-view) - 100px); }
    }
    /* A phone held sideways: the open chat takes the height (the header's close button closes it), and the
       header, the box and the choices give up room, so that the latest message and Send stay in sight. */
    /* .short: 500 px tall or less as the customer sees it (fitView()), held sideways, zoomed, or over the on-screen
       keyboard, which left a phone's message list 26 px under a handoff banner. */
    .root.short { bottom: calc(8px + var(--deskbot-covered)); } .root.short.open .launcher { display: none; }
    .short .panel { height: calc(var(--deskbot-view) - 16px); }
    .short header { padding: 6px 12px; } .short .avatar, .short .subtitle, .short footer { display: none; }
    .short textarea { max-height: 64px; } .short .quick { max-height: 22%; }
    /* The suggested replies in one row that scrolls sideways, and the placeholder on one line: at 200% zoom (180 ×
       320 px) replies wrapped to two lines each, and a placeholder to three, left the message list a third of it. */
    .short .quick { flex-wrap: nowrap; overflow-x: auto; justify-content: flex-start; }
    .short .quick button { flex: none; white-space: nowrap; }
    .short .quick button:first-child { margin-left: auto; } /* at the right, as a row that fits */
    .short textarea::placeholder { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
    /* The handoff banner too, in smaller type, and it scrolls rather than take the list's last lines: at 200% zoom
       (180 × 320 px) it left the list 26 px, and pushed the message box out of the chat. */
    .short .banner { padding: 4px 12px; gap: 2px 8px; font-size: 12px; line-height: 1.35; overflow-y: auto;
      min-height: calc(1.35em + 8px); } /* its first line */
    .short .banner button { padding: 2px 10px; font-size: 12px; }
    .short .scroll { padding: 8px 12px 4px; min-height: 64px; }
    /* A phone zoomed to 200% (180 px wide): the header's room goes to the title, which keeps to two lines
       (after the .short rules: that phone is held upright, and 320 px tall). */
    @media (max-width: 260px) {
      .root header { gap: 4px; padding-left: 8px; padding-right: 4px; } h2 { font-size: 14px; line-height: 1.3; }
    }
    /* Fingers: controls at least 40 px tall, and Retry no longer a word-sized target. */
    @media (pointer: coarse) {
      .close { width: 44px; height: 44px; }
      .quick button { min-height: 40px; }
      .feedback button { width: 40px; height: 36px; }
      .status-line button { min-height: 32px; padding: 0 8px; }
    }
    /* Printed, the page is the shop's (an order confirmation): the chat, fixed, was drawn over its text on each sheet */
    @media print { .root { display: none; } }
    @media (prefers-reduced-motion: reduce) {
      * { animation: none !important; transition: none !important; scroll-behavior: auto !important; }
    }
    /* High contrast (Windows' contrast themes): backgrounds give way to the theme's, borders keep its text colour.
       The launcher, Send, the bubbles and the header, drawn by background alone, had no edge left, and the customer's
       messages ran into the bot's; New messages, over the list, and a comment's Send read as text among its text. A
       transparent border is drawn then, and only then. */
    @media (forced-colors: active) {
      .launcher, .send, .bubble, .dots, .jump, .comment button { border: 1px solid transparent; }
      header { border-bottom: 1px solid transparent; }
      .dots i { forced-color-adjust: none; background: CanvasText; } /* the typing dots, drawn by background alone */
    }
  `;

  // Icons built node by node, as everything else: a page that requires Trusted Types refuses innerHTML (the widget
  // never started). Each is its stroke width and its path.
  const ICONS = {
    chat: ["2", "M21 12a8.5 8.5 0 0 1-12.4 7.6L3 21l1.5-5.2A8.5 8.5 0 1 1 21 12z"],
    close: ["2.2", "M6 6l12 12M18 6L6 18"],
    send: ["2.2", "M5 12h13M12 5l7 7-7 7"],
    up: ["2", "M7 10v11H4a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1h3zm0 0l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.4 8A2 2 0 0 1 18.1 21H7"],
    down: ["2", "M17 14V3h3a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1h-3zm0 0l-4 8a3 3 0 0 1-3-3v-4H4.5a2 2 0 0 1-2-2.3l1.4-8A2 2 0 0 1 5.9 3H17"],
  };
  const SVG = "http://www.w3.org/2000/svg";

  function icon(name) {
    const [width, d] = ICONS[name];
    const svg = document.createElementNS(SVG, "svg");
    const attributes = { viewBox: "0 0 24 24", fill: "none", stroke: "currentColor", "stroke-width": width,
      "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true" };
    for (const [attribute, value] of Object.entries(attributes)) svg.setAttribute(attribute, value);
    svg.appendChild(document.createElementNS(SVG, "path")).setAttribute("d", d);
    return svg;
  }

  function iconButton(className, name, label) {
    const button = el("button", className);
    button.type = "button";
    button.append(icon(name));
    if (label) labelButton(button, label);
    return button;
  }

  // An icon's name, and the tooltip a mouse finds, in its title alone: beside an aria-label the same title became the
  // button's description, and a screen reader said "Close chat, button, Close chat".
  function labelButton(button, label) {
    button.title = label;
  }

  // --- the DOM ------------------------------------------------------------------------------------

  const host = document.createElement("div");
  host.id = "deskbot-widget";
  // Its own position and z-index, over any page rule: with body > * { position: relative; z-index: 1 } the widget
  // was stacked at 1, under the page's fixed header. Set by script, which a page's CSP allows. Every other property
  // is reset first: div:empty { display: none } hid the chat, and body > * { filter: … } moved it off the screen.
  host.style.setProperty("all", "initial", "important");
  host.style.setProperty("position", "relative", "important");
  host.style.setProperty("z-index", String(zIndex), "important");
  const shadow = host.attachShadow({ mode: "open" });
  const root = el("div", `root${config.position === "left" ? " left" : ""}`);
  // The colours a site's stylesheet gives the chat in the documented custom properties, on the host or above it
  // (#deskbot-widget { --deskbot-bg: #000 }, :root { --deskbot-primary: … }): the widget's own values, set inside its shadow
  // root, hid them. Read by script, so that the text on them (derive()) is chosen to read as on the config's.
  // Each also by its former name (--db-bg), which sites used; a site's own variable of that short name coloured the
  // chat unasked, so the page's developer is told, once a name, which one the chat took and what it is named now.
  const formerNamesSaid = new Set();
  function pageColors() {
    const style = getComputedStyle(host);
    const given = {};
    for (const [name, variable] of Object.entries(COLOR_VARS)) {
      const former = variable.replace("--deskbot-", "--db-");
      const current = style.getPropertyValue(variable).trim();
      const value = current || style.getPropertyValue(former).trim();
      if (!value) continue;
      given[name] = value;
      if (!current && !formerNamesSaid.has(former)) {
        formerNamesSaid.add(former);
        console.warn(`deskbot: the page's CSS custom property ${former} colours the chat: name it ${variable}, the ` +
          `name the chat reads first (${former}, which a site's own variables may share, is read too for now).`);
      }
    }
    return given;
  }
  // The chat in its colours, again when the device turns dark or light (its colour scheme follows the time of day),
  // or the page's stylesheet gives others (repaintOnRestyle())
  function paint() {
    const given = palette(pageColors());
    for (const [name, variable] of Object.entries(COLOR_VARS)) {
      if (typeof given[name] === "string") root.style.setProperty(variable, given[name]);
      else root.style.removeProperty(variable);
    }
    for (const [name, value] of Object.entries(derive(given))) root.style.setProperty(name, value);
  }
  if (darkScheme) darkScheme.addEventListener("change", paint);
  // A site's dark-mode toggle changes a class or an attribute of <html> or <body> (html.dark { --deskbot-bg: … }); a
  // stylesheet the page adds to its <head> once the chat has started (a route's own, loaded lazily) gives its colours
  // once it applies: a <style> at once, a <link> once loaded, a deferred one (media="print", then "all") once switched.
  function repaintOnRestyle() {
    const restyled = new MutationObserver(paint);
    for (const node of [document.documentElement, document.body]) restyled.observe(node, { attributes: true });
    if (document.head) restyled.observe(document.head, { attributes: true, childList: true, characterData: true, subtree: true });
    document.addEventListener("load", (event) => {
      if (event.target instanceof HTMLLinkElement) paint();
    }, true); // load does not bubble
  }

  const panel = el("section", "panel");
  panel.id = "deskbot-panel";
  panel.hidden = true;
  panel.setAttribute("role", "dialog");

  const header = el("header");
  const avatar = el("div", "avatar");
  avatar.append(icon("chat"));
  const heading = el("div", "heading");
  const title = el("h2");
  title.id = "deskbot-title";
  panel.setAttribute("aria-labelledby", title.id);
  const subtitle = el("p", "subtitle");
  heading.append(title, subtitle);
  const closeButton = iconButton("close", "close");
  header.append(avatar, heading, closeButton);

  const banner = el("div", "banner");
  banner.hidden = true;
  // An agent taking over is said from a status region that stays while only its text changes, as "Typing…" is: the
  // banner, shown with its text already in it, was never said.
  const handoffStatus = el("div", "sr");
  handoffStatus.setAttribute("role", "status");
  const backButton = el("button");
  backButton.type = "button";
  const bannerText = el("span");
  banner.append(bannerText, backButton);

  const scroller = el("div", "scroll");
  const log = el("div", "log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "off"); // polite once the history shown again is in it (start())
  const typing = el("div", "typing"); // the dots, seen while an answer is on its way
  typing.hidden = true;
  const dots = el("span", "dots");
  dots.setAttribute("aria-hidden", "true");
  dots.append(el("i"), el("i"), el("i"));
  typing.append(dots);
  // "Typing…" for a screen reader, in a live region that stays while only its text comes and goes: a screen reader
  // says a region's new text only if the region was there before it, and the dots' box, shown with its text already
  // in it, was never said.
  const typingStatus = el("div", "sr");
  typingStatus.setAttribute("role", "status");
  const jump = el("button", "jump"); // to the end, for a customer reading back when a message comes
  jump.type = "button";
  jump.hidden = true;
  scroller.append(log, typing, typingStatus, jump);

  const quick = el("div", "quick");
  quick.setAttribute("role", "group");

  const form = el("form");
  const inputLabel = el("label", "sr");
  inputLabel.htmlFor = "deskbot-input";
  const input = el("textarea");
  input.dir = "auto";
  input.id = "deskbot-input";
  input.rows = 1;
  input.enterKeyHint = "send"; // Enter sends: a phone's keyboard labels its key so
  const sendButton = iconButton("send", "send");
  sendButton.type = "submit";
  sendButton.disabled = true;
  form.append(inputLabel, input, sendButton);

  const footer = el("footer");
  panel.append(header, banner, handoffStatus, scroller, quick, form, footer);

  const launcher = iconButton("launcher", "chat");
  launcher.setAttribute("aria-expanded", "false");
  launcher.setAttribute("aria-controls", panel.id);

  function label() {
    root.lang = lang;
    title.textContent = config.title || (lang === "zh-Hant" && serverTitleTraditional[chineseScript])
      || (serverTitle && typeof serverTitle === "object" ? serverTitle[spoken()] : serverTitle) || t.title;
    subtitle.textContent = handedOff ? t.subtitleAgent : t.subtitle;
    labelButton(closeButton, t.close);
    labelButton(sendButton, t.send);
    labelButton(launcher, panel.hidden ? launcherName() : t.close);
    backButton.textContent = t.backToBot;
    bannerText.textContent = handoffText();
    log.setAttribute("aria-label", t.messages);
    sayTyping();
    jump.textContent = t.newMessages;
    quick.setAttribute("aria-label", t.suggestions);
    inputLabel.textContent = t.inputLabel;
    input.placeholder = t.placeholder;
    footer.textContent = t.poweredBy;
  }

  // The customer's language once they have written, as the bot's answer gives it (a bot of both languages answers in
  // the one the customer writes): a customer writing Chinese on an English page read the bot's Chinese under an
  // English placeholder, Send and banners. Not where the page fixed the widget's (deskbotConfig.lang), nor for a bot
  // of one language; kept with the conversation, for the site's next pages.
  let customerSpoke = false; // the widget speaks the customer's language, not the page's
  function speakAs(answered) {
    if (chosenLang || known(botLanguage) || !answered || !known(answered.language)) return;
    store.set("language", JSON.stringify({ language: answered.language, script: answered.script,
      conversation: conversationId }));
    customerSpoke = true;
    const traditional = answered.language === "zh" && ["traditional", "hongkong"].includes(answered.script);
    if (traditional) chineseScript = answered.script;
    speak(traditional ? "zh-Hant" : answered.language);
  }
  function speak(name) {
    lang = name;
    t = strings(lang);
    label();
    // What was said before in the widget's former language is marked as that language's now
    for (const node of log.querySelectorAll(".bubble")) markLanguage(node, node.textContent);
    for (const message of log.querySelectorAll(".msg")) labelMessage(message);
    for (const node of quick.children) markLanguage(node, node.textContent);
  }
  // The page's own language, the widget's until the customer writes: a single-page app's language menu changes it
  // without loading the page anew, and the widget kept the language of the page it had loaded on.
  function speakPages() {
    const tag = document.documentElement.lang || navigator.language;
    chineseScript = scriptOf(tag);
    speak(language(tag) || "en");
  }
  new MutationObserver(() => {
    if (!chosenLang && !known(botLanguage) && !customerLanguage()) speakPages();
  }).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
  // The language the customer wrote in, if this conversation has one
  function customerLanguage() {
    const kept = store.json("language", {});
    return kept.conversation === conversationId ? kept : null;
  }

  const announcer = el("div", "sr");  // outside the panel, which is hidden while the chat is closed
  announcer.setAttribute("aria-live", "polite");
  root.append(panel, launcher, announcer);
  shadow.append(root);
  // A constructed stylesheet: a page's CSP of style-src 'self' blocks a <style> element, and left the widget
  // unstyled. The element where the browser has no constructed sheets (Safari before 16.4).
  try {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    shadow.adoptedStyleSheets = [sheet];
  } catch {
    shadow.append(el("style", "", CSS));
  }

  // --- messages -----------------------------------------------------------------------------------

  const seenTurns = new Set();

  // The list follows the conversation while the customer reads its end: one who scrolled up to read an
  // earlier answer stays there when a message comes (their own takes them down), and a rotated phone or
  // a resized window keeps the latest message in sight.
  let atEnd = true;
  function scrollToEnd() {
    scroller.scrollTo({ top: scroller.scrollHeight, behavior: "instant" });
    atEnd = true;
    jump.hidden = true;
  }
  // ``news``: a message came, which a customer reading back is told of by the button to the end. One taller than the
  // list (a long answer) is shown from its start, where its reader begins: scrolled to the end, they found its last
  // lines and had to scroll back up for the rest.
  function follow(news, message) {
    if (atEnd && news && !restoring && message && message.offsetHeight > scroller.clientHeight) {
      const above = message.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
      scroller.scrollTo({ top: scroller.scrollTop + above - 8, behavior: "instant" });
      atEnd = false;
    } else if (atEnd) scrollToEnd();
    else if (news && !restoring) jump.hidden = false;
  }
  // Left by scrolling up, reached by scrolling to the end: a list the panel made shorter (a rotated phone) moved
  // nothing, and its scroll event must not count as the customer leaving the end.
  let lastTop = 0;
  scroller.addEventListener("scroll", () => {
    const top = scroller.scrollTop;
    if (top < lastTop - 1) atEnd = false;
    if (top + scroller.clientHeight >= scroller.scrollHeight - 24) atEnd = true;
    lastTop = top;
    if (atEnd) jump.hidden = true;
  });
  jump.addEventListener("click", () => {
    scrollToEnd();
    input.focus(); // the button is gone: the keyboard goes on to the message box
  });
  // The chat within what the customer sees (--deskbot-view, --deskbot-covered): the visual viewport, which a phone's on-screen
  // keyboard and toolbar shrink while the layout viewport the chat is fixed to stays as tall. Pinch-zoomed, the page
  // keeps the CSS's heights: the chat, fixed to the layout viewport, is then seen in part anyway.
  function fitView() {
    const layout = document.compatMode === "CSS1Compat" ? document.documentElement.clientHeight : window.innerHeight;
    const view = window.visualViewport && Math.abs(window.visualViewport.scale - 1) <= 0.01 ? window.visualViewport
      : null; // none, or pinch-zoomed
    root.classList.toggle("short", (view ? view.height : layout) <= 500);
    if (!view) {
      root.style.removeProperty("--deskbot-view");
      root.style.removeProperty("--deskbot-covered");
      return;
    }
    root.style.setProperty("--deskbot-view", `${view.height}px`);
    root.style.setProperty("--deskbot-covered", `${Math.max(0, layout - view.offsetTop - view.height)}px`);
  }
  window.addEventListener("resize", fitView);
  if (window.visualViewport) {
    for (const type of ["resize", "scroll"]) window.visualViewport.addEventListener(type, fitView);
  }
  fitView();
  const resized = new ResizeObserver(() => follow());
  resized.observe(scroller);
  resized.observe(log); // text wrapped anew (a narrower panel) grows the list: the latest stays in sight

  // A message that came while the chat was closed: a dot on the launcher, and its name counts them, which a
  // screen reader says (the log that announces messages is inside the hidden panel). An agent's takeover is told
  // the same way: its banner and status region are inside the hidden panel too.
  // Nor is what the customer read in another of the site's tabs, its chat open in sight: the answers to what they
  // asked there counted as new in every other tab, and each tab they went back to said so of messages already read.
  // The latest turn read so is kept for the tabs (``read``), which count only those after it.
  let unread = 0;
  let unreadTurns = []; // the turn ids counted (null for a message without one), to be uncounted once read elsewhere
  let takenOver = false; // an agent took the chat over while it was closed
  let restoring = false; // the history shown again after a reload, or the greeting: nothing new to count
  function launcherName() {
    return unread ? t.openUnread(unread) : takenOver ? t.openTakenOver : t.open;
  }
  function markUnread(takeover = false, turnId = null) {
    if (!panel.hidden) markRead();
    if (!panel.hidden || restoring || (turnId != null && turnId <= readUpTo())) return;
    if (takeover) {
      if (joinedSeen()) return; // seen in another tab already, this one told of it later (its next poll)
      takenOver = true;
    } else {
      unread += 1;
      unreadTurns.push(turnId);
    }
    showNews();
  }
  // The latest turn of this conversation read in an open chat in sight, in any of the site's tabs
  function readUpTo() {
    const read = store.json("read", {});
    return read.conversation === conversationId && Number.isInteger(read.turn) ? read.turn : 0;
  }
  function markRead() {
    const turn = Math.max(0, ...seenTurns);
    if (panel.hidden || document.visibilityState !== "visible") return;
    if (handedOff && !joinedSeen()) store.set("joined", JSON.stringify({ conversation: conversationId, at: Date.now() }));
    if (turn > readUpTo()) store.set("read", JSON.stringify({ conversation: conversationId, turn }));
  }
  // So is an agent's takeover, once seen in an open chat in sight in any of the site's tabs (``joined``: when, for
  // the conversation): the launcher of every other tab went on saying a person had joined, with its dot, until it was
  // opened there too. A takeover seen since this tab last knew the conversation with the bot (``withBotAt``) is the
  // one it is told of, or a later one it never knew apart.
  let withBotAt = Date.now();
  function joinedSeen() {
    const seen = store.json("joined", {});
    return seen.conversation === conversationId && typeof seen.at === "number" && seen.at >= withBotAt;
  }
  window.addEventListener("storage", (event) => {
    if (event.key !== `${storageKey}:joined` || !takenOver || !joinedSeen()) return;
    takenOver = false;
    showNews();
  });
  window.addEventListener("storage", (event) => {
    if (event.key !== `${storageKey}:read` || !unread) return;
    const upTo = readUpTo();
    const left = unreadTurns.filter((turn) => turn === null || turn > upTo);
    if (left.length === unread) return;
    unread = left.length;
    unreadTurns = left;
    showNews();
  });
  // The closed chat's launcher as what came says: its name, the live region that says it, and the dot. An agent
  // who handed back before the chat was opened is no longer news: the launcher had said a person had joined.
  function showNews() {
    const news = unread > 0 || takenOver;
    labelButton(launcher, launcherName());
    announcer.textContent = news ? launcherName() : "";
    const badge = launcher.querySelector(".badge");
    if (news && !badge) launcher.append(el("span", "badge"));
    else if (!news && badge) badge.remove();
  }

  // A control that takes itself away (a quick reply, the banner's way back, Retry) or turns itself off (Send) hands
  // the keyboard on to the message box: it fell to the page, and the next Tab started from the page's top or end.
  function removing(container, change) {
    const focused = container.contains(shadow.activeElement);
    change();
    if (focused) input.focus();
  }

  // A text in the language the widget does not speak is marked so (WCAG 3.1.2): a bilingual bot answers a question
  // written in Chinese on an English page in Chinese, and a screen reader read it in the page's English voice. At a
  // draw (writtenIn()) it is left the widget's.
  function markLanguage(node, text) {
    const own = node.dataset.lang; // the widget's own greeting, in the language (and script) it was shown in
    if (own) {
      if (own !== lang) node.lang = own;
      else node.removeAttribute("lang");
      return;
    }
    const written = writtenIn(text, spoken());
    if (written !== spoken()) node.lang = written;
    else node.removeAttribute("lang"); // the widget's own, since it took the customer's
  }

  // One bubble of a message
  function bubbleOf(role, text) {
    const bubble = el("div", "bubble");
    bubble.dir = "auto"; // Hebrew or Arabic reads right to left, its punctuation where its reader looks
    markLanguage(bubble, text);
    if (role === "user") bubble.textContent = text; // what the user typed, exactly
    else bubble.append(renderMarkdown(text));
    return bubble;
  }

  // What a bot reply says, bubble by bubble: a custom action's texts apart, in its order, where it sent a payload
  // between them (``messages``, as /api/chat's reply and the history list them), as Rasa's channels show each of its
  // messages; else its one text. Joined, its two texts read as one message in one bubble.
  function saidIn(text, messages) {
    const texts = (messages || []).filter((m) => m && typeof m.text === "string" && m.text).map((m) => m.text);
    return texts.length ? texts : text;
  }

  // ``text``: a list for a bot reply of several bubbles (saidIn)
  function addMessage(role, text, turnId, feedback, author) {
    if (turnId != null) {
      if (seenTurns.has(turnId)) return null;
      seenTurns.add(turnId);
    }
    const message = el("div", `msg ${role}`);
    message.said = text; // as written, to be kept (keep())
    if (turnId != null) message.dataset.turnId = turnId;
    // The customer's own words stay in the log, to be read there, but the live log does not say them back to them
    // as they send them. Its "Not sent" is an alert of its own, and still said.
    if (role === "user") message.setAttribute("aria-live", "off");
    message.dataset.role = role;
    if (author) message.dataset.author = author;
    message.append(el("span", role === "agent" ? "sender" : "sr"));
    for (const said of [].concat(text)) message.append(bubbleOf(role, said));
    if (role === "bot" && turnId != null) message.append(feedbackButtons(turnId, feedback || 0));
    labelMessage(message);
    // In the conversation's order: after every earlier turn shown, then before any later one and before this
    // tab's messages still out (another tab's turn, read meanwhile, is older than they are). A message the
    // socket lost stays out until the history has it, but the answer to the next one goes after that one.
    const nodes = [...log.children];
    const earlier = nodes.reduce((last, node, at) => (Number(node.dataset.turnId) < turnId ? at : last), -1);
    const later = turnId == null ? null : nodes.slice(earlier + 1).find((node) =>
      node.dataset.turnId ? Number(node.dataset.turnId) > turnId : node.classList.contains("out"));
    log.insertBefore(message, later || null);
    if (role !== "user") markUnread(false, turnId);
    follow(role !== "user", message);
    return message;
  }

  // Who says a message (hidden "You:" and "Bot:" for a screen reader, an agent's name shown) and its thumbs' names,
  // in the widget's language: written again when it takes the customer's, as the earlier messages' were still read
  // out in the old one.
  function labelMessage(message) {
    const { role, author } = message.dataset;
    const sender = { user: t.you, bot: config.title || title.textContent, agent: t.agent }[role];
    message.querySelector(":scope > .sender, :scope > .sr").textContent = role === "agent"
      ? (author ? `${author} · ${t.agent}` : t.agent) : `${sender}: `;
    const feedback = message.querySelector(":scope > .feedback");
    if (feedback) {
      feedback.setAttribute("aria-label", t.feedback);
      labelButton(feedback.querySelector(".up"), t.helpful);
      labelButton(feedback.querySelector(".down"), t.notHelpful);
      const thanks = feedback.querySelector(".thanks"); // what the last vote's answer said: thanks, or an error
      thanks.textContent = thanks.dataset.said ? t[thanks.dataset.said] : "";
    }
    const comment = message.querySelector(":scope > .comment"); // what was wrong, after a thumbs-down
    if (comment) {
      comment.querySelector("label").textContent = t.whatWrong;
      comment.querySelector("button").textContent = t.sendComment;
    }
    const line = message.querySelector(":scope > .status-line"); // Not sent, and why, or how long to wait
    if (!line) return;
    const retryAfter = Number(line.dataset.retryAfter);
    const { code } = line.dataset;
    line.querySelector("span").textContent = retryAfter > 0 ? t.tooFast.replace("{seconds}", retryAfter)
      : code === "text_too_long" ? t.tooLong.replace("{max}", maxChars)
      : Object.prototype.hasOwnProperty.call(t.refused, code) ? t.refused[code] : t.notSent;
    line.querySelector("button").textContent = t.retry;
  }

  // A line of the conversation's own (the bot is back, a system turn of the history), said as the log says messages
  function addNotice(text) {
    log.append(el("div", "notice", text));
    follow(true);
  }

  function feedbackButtons(turnId, current) {
    const group = el("div", "feedback"); // named by labelMessage()
    group.setAttribute("role", "group");
    const up = iconButton("up", "up");
    const down = iconButton("down", "down");
    const thanks = el("span", "thanks");
    thanks.setAttribute("aria-live", "polite");
    const show = (value) => {
      up.setAttribute("aria-pressed", String(value === 1));
      down.setAttribute("aria-pressed", String(value === -1));
    };
    // Said by its name in STRINGS, so that it is said again in the customer's language when the widget takes it
    const say = (said) => {
      thanks.dataset.said = said;
      thanks.textContent = said ? t[said] : "";
    };
    show(current);
    const post = (value, comment) => api("POST", "/api/feedback",
      { conversation_id: conversationId, turn_id: turnId, value, ...user, ...(comment ? { comment } : {}) });
    const vote = async (value) => {
      const previous = up.getAttribute("aria-pressed") === "true" ? 1 : down.getAttribute("aria-pressed") === "true" ? -1 : 0;
      const next = previous === value ? 0 : value; // pressing the pressed thumb takes the vote back
      show(next);
      group.parentElement?.querySelector(":scope > .comment")?.remove();
      try {
        await post(next);
        say(next ? "thanks" : "");
        if (next === -1) group.after(commentForm(turnId, async (comment) => {
          await post(-1, comment);
          down.focus(); // the box is gone with the focus in it
        }));
      } catch {
        show(previous);
        say("error");
      }
    };
    up.addEventListener("click", () => vote(1));
    down.addEventListener("click", () => vote(-1));
    group.append(up, down, thanks);
    return group;
  }

  // The optional "What was wrong?" box a thumbs-down opens, next in the tab order after the thumb (the focus stays
  // there: a phone's keyboard would cover the chat for a box most skip). Without it a customer told what the answer
  // missed only by writing it to the bot, as a message. ``send``: the comment's vote, after which the box goes.
  function commentForm(turnId, send) {
    const box = el("form", "comment"); // its texts written by labelMessage()
    const label = el("label", "", t.whatWrong);
    const field = el("input");
    field.type = "text";
    field.id = `deskbot-comment-${turnId}`;
    field.maxLength = 2000; // the server's limit (UTF-16 units: never more code points than it counts)
    field.dir = "auto";
    label.htmlFor = field.id;
    const submit = el("button", "", t.sendComment);
    submit.type = "submit";
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && composing(event)) event.preventDefault(); // an input method's candidate, picked
    });
    box.addEventListener("submit", async (event) => {
      event.preventDefault();
      const comment = field.value.trim();
      if (!comment || submit.disabled) return;
      submit.disabled = true;
      try {
        await send(comment);
        box.remove();
      } catch {
        submit.disabled = false;
        field.setCustomValidity(t.error);
        field.reportValidity();
      }
    });
    field.addEventListener("input", () => field.setCustomValidity(""));
    box.append(label, field, submit);
    return box;
  }

  // An action's json_message, a response's custom: (Rasa's custom payload), which the widget cannot show: handed to
  // the page as it was sent, for the shop's own script to act on (window.addEventListener("deskbot:custom", (e) =>
  // ... e.detail)), once per reply; again, ``restored``, when the history is shown again after a reload, so that the
  // page draws what it drew before (a carousel) where it was.
  const handedOn = new Set(); // the replies whose payloads the page has had
  function handOn(custom, turnId, restored) {
    if (turnId != null) {
      if (handedOn.has(turnId)) return;
      handedOn.add(turnId);
    }
    for (const payload of custom || []) {
      window.dispatchEvent(new CustomEvent("deskbot:custom", {
        detail: { payload, conversationId, turnId: turnId == null ? null : turnId, restored },
      }));
    }
  }

  function showQuickReplies(buttons) {
    quick.replaceChildren();
    for (const button of buttons || []) {
      if (!button || typeof button.title !== "string" || typeof button.payload !== "string") continue;
      if (button.payload === "/resume") continue; // the handoff banner offers it, and only while it means something
      const b = el("button", "", button.title);
      markLanguage(b, button.title);
      b.type = "button";
      b.addEventListener("click", () => {
        rememberTitle(button.payload, button.title);
        send(button.payload, button.title);
      });
      quick.append(b);
    }
    follow();
  }

  let handedOff = false;
  let agentName = ""; // the agent who has the customer, named as they wrote it; shown as text, never markup
  // What the banner says: the agent's name when the server gave it
  const handoffText = () => (agentName ? t.handedOffTo(agentName) : t.handedOff);
  let statusPushes = 0; // status changes the socket pushed: newer than any reply or history read still on its way
  // agent: the name the server gave with a status ("": the agent gave none); left out by a reply, which
  // does not say who has the customer, so the name shown stays
  function setHandedOff(value, announce, agent) {
    if (!value) agentName = "";
    else if (typeof agent === "string") agentName = agent;
    bannerText.textContent = handoffText();
    if (value === handedOff) return;
    handedOff = value;
    if (!value) withBotAt = Date.now(); // a takeover seen before is no longer this one's
    removing(banner, () => { banner.hidden = !value; });
    subtitle.textContent = value ? t.subtitleAgent : t.subtitle;
    handoffStatus.textContent = value && announce ? handoffText() : ""; // emptied, it says nothing
    if (announce && value) {
      markUnread(true);
      // The bot's suggested replies are no longer the bot's to answer: one pressed reached the agent as its payload.
      removing(quick, () => quick.replaceChildren());
    }
    if (!value && takenOver) {
      takenOver = false;
      showNews();
    }
    if (announce && !value) addNotice(t.handedBack);
    schedulePoll();
  }

  let pending = 0;
  function setPending(delta) {
    pending += delta;
    typing.hidden = pending === 0;
    sayTyping();
    follow();
  }

  // Written only when it changes: the same text written again is said again, once for each message still out.
  function sayTyping() {
    const said = pending > 0 ? t.typing : "";
    if (typingStatus.textContent !== said) typingStatus.textContent = said;
  }

  // --- talking to the server ------------------------------------------------------------------------

  // An error is `lost` when it leaves open whether the server had the request: no answer came (the
  // connection dropped), or not the server's own (a proxy's 502 or 504 page). A message sent so is looked
  // for in the history before Retry is offered, as over a socket that drops (arrived()).
  // AbortSignal.timeout(ms), which the Safari of 2021 lacks.
  function timeoutSignal(ms) {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new DOMException("timed out", "TimeoutError")), ms);
    return controller.signal;
  }

  async function api(method, path, body, headers = {}) {
    let response;
    try {
      response = await fetch(server + path, {
        method,
        headers: { ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
        body: body ? JSON.stringify(body) : undefined,
        signal: timeoutSignal(body ? 60000 : 15000), // a dead network holds a request for good
      });
    } catch (error) {
      throw Object.assign(error, { lost: true });
    }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      // Only the rate limit's wait is the customer's to keep: a 503's (the server's store) is no flood of theirs. A
      // 503's is the widget's own wait before it sends a message turned away for now again (resent()).
      const said = response.headers.get("Retry-After");
      const retryAfter = response.status === 429 ? Number(said) || 0 : 0;
      const wait = response.status === 503 && said !== null ? Number(said) : undefined;
      throw Object.assign(new Error(data.error || `HTTP ${response.status}`), { retryAfter, wait, lost: !data.error,
                                                                                code: data.code || "" });
    }
    reconnectNow();
    return data;
  }

  let socket = null;
  let socketOpened = null; // a promise: true once open, false if it failed
  let reconnectDelay = 1000;
  let reconnectTimer = null; // the next try of a socket that closed
  let socketWorked = false; // it opened once: one that closes since is the server's restart, not a proxy's block
  const waiting = []; // resolvers of messages sent over the socket, answered in order

  // The server answered over HTTP: a socket that worked and closed (a deploy restarted the server) is tried again now.
  // Its pause between tries grows to 30 s, and an agent's takeover meanwhile waited for it, or for the next poll.
  function reconnectNow() {
    if (!reconnectTimer || !socketWorked) return;
    reconnectDelay = 1000;
    connect();
  }

  // Back online (a phone out of a tunnel): the socket is tried again now, not at the end of its pause between tries,
  // which grew while the network was down (5 s after 10 s offline, 30 s after a minute), and an agent's reply
  // meanwhile waited as long; without a socket, the history is read now. So too when the customer comes back to
  // the page: a phone that slept (its screen off, the tab in the background) may have lost what the socket pushed
  // meanwhile, the socket seeming open all the same, and the chat never polls while it is.
  async function wakeUp() {
    await started;
    if (!reconnectTimer) {
      sync();
      return;
    }
    reconnectDelay = 1000;
    connect(); // which reads the history once open
  }
  window.addEventListener("online", wakeUp);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    markRead();
    wakeUp();
  });

  // A page whose Content-Security-Policy leaves the bot out of its connect-src: the browser refuses the request and
  // says so, but nothing said what the chat then lacked (without its socket, agents' replies come only as often as it
  // polls) nor what to add. ``refusedByPolicy``: settled once the policy refuses any request to the bot (the browser
  // tells it just after the request failed), which explainFailure() names.
  let socketRefusalSaid = false;
  let policyRefusal;
  const refusedByPolicy = new Promise((resolve) => (policyRefusal = resolve));
  const socketBase = server.replace(/^http/, "ws");
  const socketUrl = `${socketBase}/api/ws`;
  document.addEventListener("securitypolicyviolation", (event) => {
    const blocked = event.blockedURI;
    if (!blocked.startsWith(server) && !blocked.startsWith(socketBase)) return;
    policyRefusal(true);
    if (!blocked.startsWith(socketBase) || socketRefusalSaid) return;
    socketRefusalSaid = true;
    console.warn(`deskbot: this page's Content-Security-Policy refuses the chat's WebSocket (${socketUrl}), so it asks ` +
      `over HTTP and hears agents' replies only as often as it polls: add ${new URL(socketUrl).origin} to its ` +
      "connect-src (docs/channels.md).");
  });

  function connect() {
    if (!useSocket) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    let settle;
    socketOpened = new Promise((resolve) => (settle = resolve));
    const ws = new WebSocket(socketUrl);
    socket = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      socketWorked = true;
      reconnectDelay = 1000;
      settle(true);
      join(ws);
      sync(); // agent replies sent while the socket was down
      schedulePoll();
    };
    ws.onmessage = (event) => {
      let data;
      try { data = JSON.parse(event.data); } catch { return; }
      if (data.type === "error" && data.request === "join") {
        return; // the join is sent again on the next connect; no message waits for its answer
      } else if (data.type === "reply" || data.type === "error") {
        const next = waiting.shift();
        if (next) {
          if (data.type === "reply") next.resolve(data);
          // one another server is answering (a Retry that reached the second of two): the server has it, and its
          // answer shows once given, as that of a message the socket lost. A frame with a code and a retry_after
          // (busy, stopping) names the widget's own wait before it sends the message again (resent()); the rate
          // limit's, with no code, is the customer's.
          else next.reject(Object.assign(new Error(data.error), { retryAfter: data.code ? 0 : data.retry_after || 0,
            wait: data.code ? data.retry_after : undefined, lost: Boolean(data.answered_elsewhere),
            code: data.code || "" }));
        }
      } else if (data.type === "sync" && data.conversation_id === conversationId) {
        sync(); // a turn answered elsewhere: another tab, or this page before it was reloaded
      } else if (data.type === "status" && data.conversation_id === conversationId) {
        statusPushes += 1;
        // An agent's takeover or handback is said; the customer's own request (from this tab or another) and the
        // bot's handoff are answered by the bot, whose reply says so in the log.
        setHandedOff(data.status === "handed_off", data.by === "agent", data.agent || "");
      } else if (data.conversation_id === conversationId) {
        pushed(data.type, data.reply, data.turn_id, data.author);
        if (data.type === "bot" && data.buttons) showQuickReplies(data.buttons);
      }
    };
    ws.onclose = (event) => {
      settle(false);
      if (socket === ws) socket = null;
      // A server that stops closes its sockets once the turns it runs, and the messages queued behind them, are
      // answered: a message sent as it closed, which it never read, was looked for in the history in vain, then
      // marked Not sent. Each is sent again (resent()), its id kept: the server answers a message once, wherever it
      // is sent.
      const stopped = Boolean(event) && event.code === STOPPED;
      while (waiting.length) {
        waiting.shift().reject(Object.assign(new Error("connection lost"), { lost: true, code: stopped ? "stopping" : "" }));
      }
      schedulePoll();
      // A server that stops or is not ready sends its sockets away: the load balancer sends this one to another, each
      // widget after a pause of its own, so that the customers of one server do not all reach the next at once.
      const away = event && RECONNECT_ELSEWHERE.includes(event.code);
      const pause = away ? 500 + Math.random() * RECONNECT_SPREAD_MS : 500;
      reconnectTimer = setTimeout(connect, opened ? pause : reconnectDelay);
      if (!opened) reconnectDelay = Math.min(reconnectDelay * 2, 30000);
    };
    // Given up on (an answer overdue): lost now, as when it closes, without waiting for a close a dead
    // network never delivers.
    ws.abandon = () => {
      const closed = ws.onclose;
      ws.onclose = ws.onmessage = null;
      ws.close();
      closed();
    };
  }

  // The socket hears the conversation, as this tab's customer: a signed-in customer's pushes are theirs alone.
  function join(ws) {
    ws.send(JSON.stringify({ type: "join", conversation_id: conversationId, ...user }));
  }

  // A proxy that holds the upgrade leaves the socket connecting for good: after one message has waited
  // for it in vain, the next go over HTTP at once (the socket is used if it ever opens).
  async function socketReady() {
    if (!useSocket) return false;
    if (socket && socket.readyState === OPEN) return true;
    if (!socket || socket.readyState !== CONNECTING || socket.waitedInVain) return false;
    const connecting = socket;
    const timeout = new Promise((resolve) => setTimeout(() => resolve(false), SOCKET_WAIT_MS));
    const opened = await Promise.race([socketOpened, timeout]);
    if (!opened) connecting.waitedInVain = true;
    return opened;
  }

  // ``id``: the message's own, which its Retry (in this tab or another) sends again: the server answers it once.
  // ``sent``: called once the next message may follow it (behind()): as it leaves over the socket, which keeps their
  // order. Over HTTP each is a request of its own, and one held up on a flaky network reached the bot after the next,
  // answered in reverse: the next leaves once it is answered or failed (the server answers a conversation's messages
  // one at a time all the same), or once it has been out HTTP_ORDER_WAIT_MS, its answer maybe lost on the way back.
  async function chat(text, id, sent) {
    const message = { conversation_id: conversationId, text, message_id: id, ...told(), ...wentOnFrom() };
    if (await socketReady()) {
      const ws = socket;
      return new Promise((resolve, reject) => {
        const answer = { resolve, reject };
        waiting.push(answer);
        ws.send(JSON.stringify({ type: "message", ...message }));
        sent();
        setTimeout(() => { if (waiting.includes(answer) && ws.abandon) ws.abandon(); }, REPLY_WAIT_MS);
      });
    }
    const asked = api("POST", "/api/chat", message);
    await Promise.race([asked.catch(() => {}), new Promise((resolve) => setTimeout(resolve, HTTP_ORDER_WAIT_MS))]);
    sent();
    return asked;
  }

  // A message the server turned away for now (503, or a socket's error frame, ``busy``: the model's queue is full;
  // ``stopping``: the server reached stops before it answered, a rolling restart, or closed its socket on it) is sent
  // again (chat()), its id kept, after the wait the server names (Retry-After, else a second), up to RESENDS times,
  // shown out meanwhile: the customer had to press Retry, told that the bot was busy. A stopping server's socket
  // closes: sent again, it goes over HTTP, or the next socket, and the load balancer takes it to another server.
  // Messages typed meanwhile that have not left yet wait behind it (behind()). ``place``: its progress(); ``asked()``: the conversation it is sent in, which
  // the tab may leave meanwhile (Deskbot.reset()): the refusal is then the caller's, as the last one is.
  const RESENT = ["busy", "stopping"];
  const RESENDS = 3;
  async function resent(text, id, place, asked) {
    for (let resends = 0; ; resends += 1) {
      try {
        return await chat(text, id, () => place.update({ sentIn: asked() }));
      } catch (error) {
        if (!RESENT.includes(error.code) || resends >= RESENDS) throw error;
        place.update({ sentIn: null });
        const seconds = Number.isFinite(error.wait) && error.wait >= 0 ? error.wait : 1;
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
        if (asked() !== conversationId) throw error;
      }
    }
  }

  // The message shown, if it is new
  function pushed(role, text, turnId, author) {
    if (!text) return null;
    if (role === "agent" || role === "bot") return addMessage(role, text, turnId, 0, author);
    addNotice(text);
    return null;
  }

  // Without a socket, agent replies and an agent taking over are found in the history: often while a
  // person has the conversation, a quarter as often while the bot has it.
  let pollTimer = null;
  function schedulePoll() {
    clearTimeout(pollTimer);
    pollTimer = null;
    const live = socket && socket.readyState === OPEN;
    if (!live) pollTimer = setTimeout(() => sync().finally(schedulePoll), handedOff ? pollInterval : 4 * pollInterval);
  }

  let reads = 0; // history reads started
  let readShown = 0; // the latest of them whose status is shown, or that a reply answered since made older
  async function sync() {
    try {
      const asked = conversationId;
      const pushesBefore = statusPushes;
      const read = ++reads;
      const history = await readHistory();
      if (asked !== conversationId) return; // Deskbot.reset() meanwhile: the last customer's
      let botSaid = false; // a new answer of the bot's: one that handed off or back, from another tab, says so itself
      for (const turn of history.turns) {
        if (turn.role === "agent" || turn.role === "bot") { // seen ones are skipped
          const said = turn.role === "bot" ? saidIn(turn.text, turn.messages) : turn.text;
          if (pushed(turn.role, said, turn.id, turn.author) && turn.role === "bot") botSaid = true;
          if (turn.role === "bot") handOn(turn.custom, turn.id, false); // one this tab did not get as it came
        } else if (turn.role === "user" && !seenTurns.has(turn.id)) {
          // one of this tab's own messages, still out or marked not sent though the server had it (one lost
          // with the socket may come back redacted); else what the customer wrote in another tab
          const newer = unsettled.filter((m) => turn.id > m.before && turn.id < m.until);
          const own = newer.find((m) => !m.lost && m.text === turn.text) ||
            newer.find((m) => m.lost && (m.text === turn.text || REDACTED.test(turn.text)));
          if (own) settle(own, turn.id);
          else addMessage("user", shownAs(turn.text), turn.id);
        }
      }
      // A takeover or handback pushed while it was read is newer, as is a later read's: this status would undo it.
      if (statusPushes !== pushesBefore || read <= readShown) return;
      readShown = read;
      setHandedOff(history.status === "handed_off", !botSaid, history.agent || "");
    } catch {
      // the next poll or reconnect tries again
    }
  }

  // This tab's messages whose turn id is not known yet: out, or marked not sent, and those of the site's other tabs it
  // shows out (resumeOut()). A conversation's turns are answered in order, so a message this tab lost before one of its
  // own that is settled had a turn below that one's, if any: not so another tab's, sent apart.
  const unsettled = [];
  const REDACTED = /\[(EMAIL|PHONE|CARD|IBAN|ID)\]/;
  function settle(own, turnId) {
    const at = unsettled.indexOf(own);
    unsettled.splice(at, 1);
    own.message.classList.remove("out", "failed");
    for (const line of own.message.querySelectorAll(".status-line")) line.remove();
    if (own.settled) own.settled(); // arrived() stops waiting
    notSent.delete(own.id);
    saveOut();
    if (turnId == null) return;
    seenTurns.add(turnId); // so that a later sync() or arrived() looks past it
    own.message.dataset.turnId = turnId;
    if (own.mirror) return; // another tab's: its turn says nothing of the order of this tab's
    lastAnswered = { conversation: conversationId, id: own.id };
    keepProof();
    for (const earlier of unsettled.slice(0, at).filter((m) => !m.mirror)) earlier.until = Math.min(earlier.until, turnId);
  }

  // This tab's messages still awaiting their answer, kept through a reload: reloaded meanwhile, the chat showed
  // neither the message nor its answer, which the history has only once it is given (an HTTP chat waited for its
  // next poll, up to 16 s). Shared with the site's other tabs too, for those open already or opened meanwhile to show
  // them as well, each conversation's apart (a tab signed in and a visitor's may be in two), each message named by its
  // id and the page that has it out: each tab writes its own alone, as a tab showing another's would keep it there after
  // the tab that sent it had given up on it. A message shown from another tab is a ``mirror``; one of this tab's marked
  // Not sent stays in the list so marked (``failed``), for the tabs showing it to mark it so too.
  const RESUME_MS = 60000; // as long as a message's request waits for its answer
  // The messages out that may still be answered, as kept in ``storage``, by conversation
  function outIn(storage) {
    const kept = new Map(Object.entries(storage.json("out", {})));
    for (const [id, out] of kept) {
      const live = Array.isArray(out) ? out.filter((m) => m && typeof m.id === "string" && m.at + RESUME_MS > Date.now()) : [];
      if (live.length) kept.set(id, live);
      else kept.delete(id);
    }
    return kept;
  }
  const savedOut = (storage) => outIn(storage).get(conversationId) || [];
  const isFailed = (own) => own.message.classList.contains("failed");
  const notSent = new Map(); // this tab's own messages marked Not sent, by id, until answered, sent again or too old
  const entry = ({ text, shown, before, at, id }) => ({ text, shown, before, at, id, tab: tabId });
  function saveOut() {
    const own = unsettled.filter((m) => !m.mirror && !isFailed(m)).map(entry);
    tabStore.set("out", JSON.stringify({ [conversationId]: own }));
    for (const [id, m] of notSent) if (m.at + RESUME_MS <= Date.now()) notSent.delete(id);
    const out = [...own, ...[...notSent.values()].map((m) => ({ ...entry(m), failed: true }))];
    const ids = new Set(out.map((m) => m.id)); // a reloaded tab's, kept by it before under another page's name
    const shared = outIn(store);
    for (const [id, kept] of shared) {
      const others = kept.filter((m) => m.tab !== tabId && !ids.has(m.id));
      if (others.length) shared.set(id, others);
      else shared.delete(id);
    }
    if (out.length) shared.set(conversationId, [...(shared.get(conversationId) || []), ...out]);
    store.set("out", JSON.stringify(Object.fromEntries(shared)));
  }

  // The messages this tab had out when it was reloaded, or another tab has out as this one opens, shown out below
  // the history and waited for as a message the socket lost is (arrived()), unless the history already has them.
  function resumeOut() {
    const own = savedOut(tabStore);
    for (const m of own) showOut(m, false);
    for (const m of savedOut(store)) showOut(m, true);
    saveOut();
  }

  // A message out, as saveOut() keeps it, shown out here (``mirror``: another tab's) and waited for (awaitResumed()),
  // unless it is shown already: out, or answered (the history read or pushed before its tab's word came).
  function showOut({ text, shown, before, at, id, failed }, mirror) {
    const left = at + RESUME_MS - Date.now();
    const answered = [...log.querySelectorAll(":scope > .msg.user[data-turn-id]")].some((node) =>
      Number(node.dataset.turnId) > before && (node.said === text || node.said === shown || REDACTED.test(node.said)));
    if (left <= 0 || failed || answered || unsettled.some((own) => own.id === id)) return;
    const message = addMessage("user", shown);
    if (!mirror) message.sentBy = customerId(); // another tab's follows it into a new conversation there (startOver())
    message.classList.add("out");
    const own = { message, text, shown, before, until: Infinity, at, lost: true, id, mirror };
    unsettled.push(own);
    awaitResumed(own, left);
  }

  async function awaitResumed(own, left) {
    setPending(1);
    const waits = [500, 1000, 2000];
    while (waits.reduce((sum, wait) => sum + wait, 0) < left) waits.push(4000);
    const answered = await arrived(own, waits);
    if (!answered && own.givenUp === "gone") unshow(own);
    else if (!answered) failed(own);
    setPending(-1);
  }

  // Settled once the history (or the greeting) is shown. A message sent before, over a slow network, waits for it:
  // sent at once, it showed above the greeting, and the history read meanwhile could already hold it.
  let loaded;
  const started = new Promise((resolve) => (loaded = resolve));

  // Where a message stands on its way: the conversation it was last sent in (``sentIn``), ``done`` once answered or
  // given up, and ``changed``, settled at the next change of either (``update()``).
  function progress() {
    const place = { sentIn: null, done: false };
    let next;
    const renew = () => (place.changed = new Promise((resolve) => (next = resolve)));
    renew();
    place.update = (fields) => {
      const changed = next;
      Object.assign(place, fields);
      renew();
      changed();
    };
    return place;
  }
  const nothingOut = progress();
  nothingOut.done = true;
  let lastSent = nothingOut; // the progress() of the message typed last

  // Settled once the message whose progress() is ``place`` is answered or given up, or sent in the conversation this
  // tab is in: one sent there after it is answered after it (the server answers a conversation's messages in the order
  // they come), and its answer waited for no longer.
  async function behind(place) {
    while (!place.done && place.sentIn !== conversationId) await place.changed;
  }

  // ``id``: a message sent again (Retry) keeps its first one's. ``moved``: one refused in a conversation closed to
  // this tab, sent on in the one it went on in with its bubble (``message``) and its progress() (``place``). Each
  // message goes once the one typed before it (``prior``) is sent where it goes too (behind()): each sent on as its own
  // refusal came, two sent together were shown and sent again in reverse order; sent on one after the other's answer,
  // a slow action held the next up, and a message typed meanwhile in the new conversation came before it.
  async function send(text, shown, id = randomId(), moved = null) {
    text = text.trim();
    if (!text) return;
    const place = moved ? moved.place : progress();
    const prior = moved ? moved.prior : lastSent;
    if (!moved) lastSent = place;
    const message = moved ? moved.message : addMessage("user", shown || text);
    if (!moved) {
      message.sentBy = customerId(); // whose it is: only theirs follows them into a new conversation (startOver())
      scrollToEnd(); // the customer's own message takes them to the end
    }
    message.classList.add("out");
    removing(quick, () => quick.replaceChildren());
    setPending(1);
    await started;
    const own = { message, text, shown: shown || text, before: Math.max(0, ...seenTurns), until: Infinity,
      at: Date.now(), id };
    unsettled.push(own);
    saveOut();
    const pushesBefore = statusPushes;
    let asked = conversationId;
    try {
      if (navigator.onLine === false) throw new Error("offline"); // it cannot leave the device: Not sent at once
      await behind(prior);
      if (asked !== conversationId) { // the tab went on in another conversation meanwhile
        if (!closedHere.has(asked) || !message.isConnected) return; // Deskbot.reset(): the last customer's message
        asked = conversationId; // closed to this tab: sent where the tab went on, as one refused there is
      }
      const telling = wentOnFrom().continues ? continuing : null; // told with this message (chat())
      const reply = await resent(text, id, place, () => asked);
      if (asked !== conversationId) { // Deskbot.reset() meanwhile: the answer is the last customer's, and goes
        if (closedHere.has(asked) && message.isConnected) {
          answeredBefore(message, shown || text, reply);
          goesOnFrom(asked, id);
        }
        return;
      }
      if (telling) {
        telling.told = true;
        keepProof();
      }
      if (user.user_hash) {
        signedInHere = asked;
        store.set("signed-in", JSON.stringify({ id: asked, user: customerId() }));
      }
      if (unsettled.includes(own)) settle(own, reply.user_turn_id);
      speakAs(reply);
      if (reply.source !== "silent") {
        if (reply.reply) addMessage("bot", saidIn(reply.reply, reply.messages), reply.turn_id);
        showQuickReplies(reply.buttons); // an action may offer buttons alone
        handOn(reply.custom, reply.turn_id, false);
      }
      // The reply says whether it handed off, unless an agent's takeover or handback was pushed meanwhile. A history
      // read still on its way is older.
      if (statusPushes === pushesBefore) {
        readShown = reads;
        setHandedOff(Boolean(reply.handed_off), false);
      }
    } catch (error) {
      // One refused (or cut off with the socket) in a conversation closed to this tab is sent again in the one it went
      // on in (a conversation of its own): a second message sent quickly was lost, neither answered nor marked Not
      // sent. Unless the customer's chat was reset meanwhile, its bubble gone with the log.
      const left = asked !== conversationId;
      if (left ? closedHere.has(asked) && (signedInElsewhere(error) || error.lost) : closedToThisTab(error)) {
        if (message.isConnected) await send(text, shown, undefined, { message, prior, place });
        return;
      }
      if (left) { // its message went with the log, unless its conversation was closed to this tab
        if (closedHere.has(asked) && message.isConnected) failed(own, error.retryAfter || 0, error.code);
        return;
      }
      own.lost = Boolean(error.lost);
      if (/^user_hash: /.test(error.message)) { // a bot with channels.web.identity_secret refused the page's userHash
        console.error(`deskbot: ${error.message}; deskbotConfig.userHash must be that of deskbotConfig.user (docs/channels.md)`);
      }
      if (!own.lost) { // refused (a 429): the server did not keep it
        unsettled.splice(unsettled.indexOf(own), 1);
        saveOut();
      }
      if (!(own.lost && (await arrived(own)))) failed(own, error.retryAfter || 0, error.code);
    } finally {
      setPending(-1);
      place.update({ done: true });
    }
  }

  // A message answered in the conversation it was sent in, closed to this tab meanwhile (the customer signed in in
  // another tab, or this tab followed one that left it): its answer dropped, the message vanished from the chat, as
  // if never sent. Its answer shows below it, with no thumbs (its turn is the conversation left's), nor the buttons
  // or handoff meant for that conversation. Neither is in the history of the conversation the tab went on in: both are
  // kept with it (keep()), as a reload, or the site's next page, showed them no more.
  function answeredBefore(message, shown, reply) {
    message.classList.remove("out");
    const said = reply.source === "silent" || !reply.reply ? null : saidIn(reply.reply, reply.messages);
    const answer = said && addMessage("bot", said);
    if (answer) message.after(answer);
    keep([message, answer].filter(Boolean));
  }

  // Messages shown in a conversation this tab left for the one it is in now, whose history has them not (answeredBefore(),
  // and what a tab that went on in one of its own showed there before it joined another's: storage's "conversation"
  // event), kept with that one in the site's storage, and shown above its history on a reload or the site's next page
  // (showKept()): their thumbs go, as their turns are another conversation's.
  function keep(messages) {
    for (const message of messages) {
      delete message.dataset.turnId;
      message.dataset.kept = "";
      for (const own of message.querySelectorAll(":scope > .feedback, :scope > .comment")) own.remove();
    }
    const said = messages.map(({ dataset, said }) => ({ role: dataset.role, said, author: dataset.author }));
    store.set("kept", JSON.stringify({ conversation: conversationId, messages: [...keptMessages(), ...said] }));
  }

  // The messages kept with the conversation this tab is in (keep()): none for any other.
  function keptMessages() {
    const saved = store.json("kept", {});
    return saved.conversation === conversationId && Array.isArray(saved.messages) ? saved.messages : [];
  }

  // Those messages shown again above the history: sent before anything the conversation holds, they were shown there.
  function showKept() {
    const shown = keptMessages().map(({ role, said, author }) => addMessage(role, said, null, 0, author));
    for (const message of shown) message.dataset.kept = "";
    log.prepend(...shown);
  }

  // A message refused because the conversation became a signed-in customer's in another of the site's tabs (they
  // signed in there): it is theirs alone, and this tab, its page still a visitor's, starts one of its own. What the
  // customer typed on while the message was out (a slow network) stays in the box: it is this customer's.
  // When this tab signed the customer in itself, its page named the next customer (or its visitor) without
  // Deskbot.reset(): its developer is told.
  function closedToThisTab(error) {
    if (!signedInElsewhere(error)) return false;
    if (conversationId === signedInHere) {
      console.error(`deskbot: ${error.message}; call Deskbot.reset() when a customer signs out (docs/channels.md)`);
    }
    const draft = input.value;
    closedHere.add(conversationId);
    const left = conversationId;
    newConversation(customerId(), left);
    if (lastAnswered && lastAnswered.conversation === left) goesOnFrom(left, lastAnswered.id);
    startOver(true);
    input.value = draft;
    resize();
    return true;
  }

  // A socket that drops while a message is out leaves open whether the server had it. It had it when
  // the history gains its customer turn (stored with its answer, which a slow action may take seconds
  // to give, so it is looked for over about 12 s); sync() then shows the answer, and settles it even
  // after it was marked not sent. Offering Retry at once would send it twice.
  async function arrived(own, waits = [500, 1000, 2000, 4000, 4000]) {
    for (const wait of waits) {
      await new Promise((resolve) => {
        own.settled = resolve; // the socket's push of the turn (sync()) ends the wait
        setTimeout(resolve, wait);
      });
      if (!unsettled.includes(own)) return true;
      await sync();
      if (!unsettled.includes(own)) return true;
      if (own.givenUp) return false;
    }
    return false;
  }

  // The messages the site's other tabs have out in this conversation (saveOut()). One sent there shows out here too, as
  // in a tab opened meanwhile (resumeOut()); one Not sent here and sent again there (its Retry) goes out again here, at
  // the end, as there. One this tab shows out that the tab that sent it marks Not sent is looked for in the history
  // once more, and else not sent here too: this tab showed it going out, with the typing dots, for up to a minute more.
  // One gone from the list (answered there, or sent on in another conversation, refused in this one once the customer
  // signed in in another tab) is looked for in the history too, and else goes from this tab: it is not this one's.
  window.addEventListener("storage", async (event) => {
    if (event.key !== `${storageKey}:out`) return;
    await started; // until then, resumeOut() shows them
    const out = savedOut(store).filter((m) => m.tab !== tabId);
    const live = new Set(out.filter((m) => !m.failed).map((m) => m.id));
    const failedThere = new Set(out.filter((m) => m.failed).map((m) => m.id));
    for (const own of unsettled) {
      if (!own.mirror || isFailed(own) || !own.settled || live.has(own.id)) continue;
      own.givenUp = failedThere.has(own.id) ? "failed" : "gone";
      own.settled(); // arrived() looks in the history now
    }
    for (const m of out.filter((m) => !m.failed)) {
      const shownNotSent = unsettled.find((own) => own.id === m.id && isFailed(own)) || notSent.get(m.id);
      if (shownNotSent) unshow(shownNotSent);
      showOut(m, true);
    }
  });

  // A message out or Not sent taken from the chat, as it is shown anew (another tab's Retry), or is not this
  // conversation's
  function unshow(own) {
    if (unsettled.includes(own)) unsettled.splice(unsettled.indexOf(own), 1);
    notSent.delete(own.id);
    removing(own.message, () => own.message.remove());
    saveOut();
  }

  // A message out marked Not sent, with its Retry. Past the server's rate limit (429) the customer is told how long
  // to wait, and Retry waits as long; a refusal with the bot's ``code`` says why (a busy bot, a store that cannot
  // write), where every one said Not sent alone.
  function failed(own, retryAfter = 0, code = "") {
    const { message, text, shown, id } = own;
    message.classList.remove("out");
    message.classList.add("failed");
    const line = el("div", "status-line");
    line.dataset.retryAfter = retryAfter;
    line.dataset.code = code || "";
    const retry = el("button");
    retry.type = "button";
    retry.addEventListener("click", () => {
      if (unsettled.includes(own)) unsettled.splice(unsettled.indexOf(own), 1);
      notSent.delete(id);
      removing(message, () => message.remove());
      send(text, shown, id);
    });
    if (retryAfter > 0) {
      retry.disabled = true;
      setTimeout(() => { retry.disabled = false; }, retryAfter * 1000);
    }
    // The alert is what went wrong alone: the whole line was one, and was heard as "Not sent. Retry".
    const said = el("span");
    said.setAttribute("role", "alert");
    line.append(said, retry);
    message.append(line);
    labelMessage(message);
    if (!own.mirror) notSent.set(id, own);
    saveOut();
    follow();
  }

  // The turns shown from the history ``read`` (null: it could not be read): none where it could not be. Above them,
  // the messages kept from a conversation this tab left for it (showKept()).
  async function loadHistory(read) {
    restoring = true;
    try {
      const history = await read;
      for (const turn of history.turns) {
        if (turn.role === "user") addMessage("user", shownAs(turn.text), turn.id);
        else if (turn.role === "bot" || turn.role === "agent") {
          const said = turn.role === "bot" ? saidIn(turn.text, turn.messages) : turn.text;
          if (turn.text) addMessage(turn.role, said, turn.id, turn.feedback, turn.author); // buttons alone: below
          handOn(turn.custom, turn.id, true);
        } else addNotice(turn.text);
      }
      const last = history.turns[history.turns.length - 1];
      if (last && last.role === "bot") showQuickReplies(last.buttons); // the choices of the question left open
      setHandedOff(history.status === "handed_off", false, history.agent || "");
      return history.turns;
    } catch {
      return [];
    } finally {
      showKept();
      restoring = false;
    }
  }

  // --- behaviour --------------------------------------------------------------------------------------

  function setLauncher(isOpen) {
    if (isOpen) {
      unread = 0;
      unreadTurns = [];
      takenOver = false;
      announcer.textContent = "";
      markRead();
    }
    launcher.setAttribute("aria-expanded", String(isOpen));
    root.classList.toggle("open", isOpen);
    labelButton(launcher, isOpen ? t.close : t.open);
    launcher.replaceChildren(icon(isOpen ? "close" : "chat")); // drops the unread badge too
  }

  function attach() {
    if (host.isConnected || !document.body) return;
    document.body.append(host);
    paint(); // in the colours the page's stylesheet gives it there
  }

  // The page's own control that opened the chat (its "Chat with us" button): closing it gives the keyboard back
  // there, as a dialog does, not to the launcher in the page's corner, after the page's last control.
  let opener = null;

  // ``chosen``: the customer (or the page's own "Chat with us" button) opened it, to type in it, and finds it open
  // on the site's next page. Opened as the page loads, it leaves the page's own focus (an autofocus search box).
  function open(chosen = true) {
    attach(); // a site that replaced its body took the widget with it
    panel.hidden = false;
    setLauncher(true);
    scrollToEnd();
    if (chosen) {
      store.set("open", "1");
      const before = document.activeElement;
      if (before !== host) opener = before && before !== document.body ? before : null;
      input.focus();
    }
  }

  function close() {
    if (panel.hidden) return; // Deskbot.close() on a closed chat leaves the page's focus where it is
    store.set("open", "0"); // and closed on the next page, whatever its config says
    const back = opener;
    opener = null;
    const focused = document.activeElement === host; // else the page's own focus stays where it is
    panel.hidden = true;
    setLauncher(false);
    if (!focused) return;
    if (back && back.isConnected) back.focus();
    if (document.activeElement !== back) launcher.focus(); // gone from the page, or no longer focusable
  }

  launcher.addEventListener("click", () => (panel.hidden ? open() : close()));
  closeButton.addEventListener("click", close);
  // A key that ends an input method's composition (pinyin being typed) is the input method's. Safari ends
  // the composition before its keydown, which then says isComposing false and keyCode 229.
  const composing = (event) => event.isComposing || event.keyCode === 229;
  // On the launcher of the open chat too, which is its Close button then: it left the chat open.
  for (const target of [panel, launcher]) {
    target.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !composing(event)) close(); // Escape in an input method cancels the composition
    });
  }
  // Keys typed in the chat are the chat's alone: out of the shadow root they seem the host div's, and a page's
  // shortcut ("/" focuses its search unless an input has focus) took characters out of the customer's message.
  for (const type of ["keydown", "keyup", "keypress"]) panel.addEventListener(type, (event) => event.stopPropagation());
  // The banner stays until the bot answers: a double click sent it twice, and the bot said twice that it was back.
  let resuming = false;
  backButton.addEventListener("click", async () => {
    if (resuming) return;
    resuming = true;
    rememberTitle("/resume", t.backToBot);
    await send("/resume", t.backToBot);
    resuming = false;
  });

  function resize() {
    input.setCustomValidity(""); // a "too long" note lasts until the text changes
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 120)}px`;
    sendButton.disabled = !readable.test(input.value);
  }
  input.addEventListener("input", resize);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !composing(event)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  // The server's limit, in characters as it counts them (code points: a textarea's maxLength counts UTF-16
  // units, and cut pasted text silently). A longer message stays in the box with a note, not sent to fail.
  let maxChars = 4000;
  // What a message must hold (GET /api/widget): zero-width spaces alone were sent, and refused, as Not sent.
  let readable = /\S/;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!readable.test(text)) return;
    if ([...text.trim()].length > maxChars) {
      input.setCustomValidity(t.tooLong.replace("{max}", maxChars));
      input.reportValidity();
      return;
    }
    removing(sendButton, () => { // Send, pressed from the keyboard, turns itself off with the box emptied
      input.value = "";
      resize();
    });
    send(text);
  });

  // The greeting opens the conversation: above a message the customer sent while the chat loaded.
  function greet() {
    if (config.greeting === false) return;
    restoring = true;
    const greeting = addMessage("bot", typeof config.greeting === "string" ? config.greeting : t.greeting);
    log.prepend(greeting);
    restoring = false;
    if (typeof config.greeting === "string") return; // the site's, in a language the widget tells as any message's
    const bubble = greeting.querySelector(".bubble");
    bubble.dataset.lang = lang;
    markLanguage(bubble);
  }

  // A new conversation, for a device customers share (a shop's customer logs out): the log, the choices and the
  // handoff go, the greeting comes again, and the socket joins anew. Answers still on their way are the last
  // customer's, and dropped (send() and sync() check the conversation they asked for).
  // ``customer``: the next one's user, userHash and metadata, as deskbotConfig gives them; none, a visitor's.
  function reset(customer) {
    const left = customerId();
    signedOut();
    identify(customer); // the last customer's id with the next one's messages had bot purge --user find them
    newConversation(left);
    startOver();
  }

  // The server's refusal of a conversation a signed-in customer had to anyone else (docs/channels.md).
  const signedInElsewhere = (error) => /^conversation_id: a signed-in/.test(error.message);
  // The conversations this tab left as they became a signed-in customer's in another tab: its messages still out in
  // one, refused there, are sent again in the conversation it went on in (send()).
  const closedHere = new Set();
  // The conversation a page goes on from, closed to it, is told to the server with its messages in the one it went on
  // in, until one is answered there, with a message of its own there for proof: the agents of the new one saw nothing
  // of what the page still showed from it (keep()), nor where it was; they find it among the customer's conversations.
  // Both kept for the tab through a reload (keepProof()): in its memory alone, a reload before the next message
  // told nothing, and the two conversations stayed apart. In the tab's storage, never the site's: the message id is
  // the proof that this page sent it. What the storage holds is taken only in the form the widget keeps it: another
  // script of the site may have left anything there.
  const PROOF = "went-on";
  const keptProof = tabStore.json(PROOF, {});
  // ``value``'s ``keys``, where each is a string: else null
  const stringsOf = (value, ...keys) => (value !== null && typeof value === "object" &&
    keys.every((key) => typeof value[key] === "string") ? Object.fromEntries(keys.map((key) => [key, value[key]])) : null);
  // this tab's latest message answered: its conversation and message id
  let lastAnswered = stringsOf(keptProof.answered, "conversation", "id");
  // {into, from, id, told}: where this tab went on from, with its proof, where it went on, and whether it was told
  let continuing = stringsOf(keptProof.continuing, "into", "from", "id");
  if (continuing) continuing.told = keptProof.continuing.told === true;
  function keepProof() {
    tabStore.set(PROOF, JSON.stringify({ answered: lastAnswered, continuing }));
  }
  function goesOnFrom(from, id) {
    if (!continuing || continuing.into !== conversationId) continuing = { into: conversationId, from, id, told: false };
    keepProof();
  }
  function wentOnFrom() {
    if (!continuing || continuing.into !== conversationId || continuing.told) return {};
    return { continues: { conversation_id: continuing.from, message_id: continuing.id } };
  }
  let signedInHere = null; // the conversation this tab's own page signed its customer in, with a message answered

  // The customer signed out (a reset, or a visitor's page loaded on their conversation): their next page is a new
  // customer's, which goes on with the visitor's conversation.
  function signedOut() {
    store.set("signed-in", "null");
  }

  let wentOn = null; // the conversation this tab started last, and the one closed to it that it left for it (``from``)
  // ``left``: the customer whose conversation this tab leaves (null for a visitor), whose other tabs follow it.
  // ``from``: that conversation, when it was closed to this tab (closedToThisTab()): only the tabs still in it follow,
  // and the choices' titles stay, as the signed-in customer's conversation goes on, in their tabs.
  function newConversation(left = customerId(), from = null) {
    conversationId = newConversationId();
    wentOn = { id: conversationId, from };
    store.set("conversation", JSON.stringify({ id: conversationId, left, user: customerId(), from }));
    if (from === null) { // the last customer's choices ("Refund order 12345"), and what they asked in one left before
      store.set("titles", "{}");
      store.set("kept", "{}");
    }
  }

  // The chat as a new conversation shows it: only the greeting, nothing of the last customer's.
  // ``carried``: the conversation left was closed to this tab, whose messages still out there go on in the new one
  // (send()): the socket stays, to hear their refusals and carry them again in order, and joins the new one, and the
  // customer's messages still out stay, to be sent on there or shown answered, as do those marked Not sent, to be sent
  // there with their Retry, and those whose answer was still looked for in the history (lost on the way: the
  // conversation left cannot be read), marked Not sent; not those of a customer signed out since (a page that named
  // the next one without Deskbot.reset()). Else it reconnects, and the answers still on their way, the last
  // customer's, go with it. ``joined``: the conversation left is one this tab went on in from another closed to it,
  // as another tab did at the same moment, whose conversation it joins: what it showed there stays, and is kept (keep()).
  function startOver(carried = false, joined = false) {
    const theirs = (message) => carried && message.sentBy === customerId();
    for (const own of unsettled) {
      if (own.lost && !own.message.classList.contains("failed") && theirs(own.message)) failed(own);
    }
    const shown = (message) => joined && (message.dataset.turnId !== undefined || message.dataset.kept !== undefined);
    const staying = [...log.querySelectorAll(":scope > .msg")].filter((message) => shown(message) ||
      (message.matches(".failed, .user.out") && theirs(message)));
    if (joined) keep(staying.filter(shown));
    input.value = ""; // and what they were typing
    input.setCustomValidity("");
    resize();
    seenTurns.clear();
    handedOn.clear();
    unsettled.length = 0;
    if (!carried) notSent.clear(); // gone with the log
    saveOut();
    log.replaceChildren();
    removing(quick, () => quick.replaceChildren());
    setHandedOff(false, false);
    unread = 0;
    unreadTurns = [];
    takenOver = false;
    if (customerSpoke) { // the next customer's chat speaks the page's language again
      customerSpoke = false;
      speakPages();
    }
    setLauncher(!panel.hidden); // no unread badge
    scrollToEnd();
    greet();
    log.append(...staying);
    if (!socket) return;
    if (!carried) socket.abandon(); // it reconnects, and joins as the new conversation
    else if (socket.readyState === OPEN) join(socket);
  }

  // A reset in another tab of the site (the customer logged out there) starts this tab's chat over too: it kept
  // showing the last customer's conversation, and the next customer's messages went on into it. Only a tab of the
  // customer whose conversation was left follows, and a visitor's: a customer signed in here keeps their own
  // conversation when a visitor's tab left open from before they signed in starts one. A tab that left a conversation
  // closed to it is followed by the tabs still in it, which take their messages out along, and by those that left it
  // for one of their own at the same moment (refused there together), taking along what they showed there: each
  // went on alone, and a reload opened the one stored last, the others' messages gone from view. Nor is one that
  // another has replaced since followed: two tabs that reset the chat at the same moment (a sign-out in every tab)
  // followed each other's and swapped, no longer sharing one; each goes on in the later one, whose event comes too.
  window.addEventListener("storage", (event) => {
    if (event.key !== `${storageKey}:conversation` || !event.newValue || event.newValue !== store.get("conversation")) {
      return;
    }
    const { id, left, user: started, from } = sharedConversation(event.newValue);
    const mine = customerId();
    const joined = from !== null && wentOn !== null && wentOn.id === conversationId && wentOn.from === from;
    if (id === conversationId || (mine !== null && mine !== left) || (from !== null && from !== conversationId && !joined)) {
      return;
    }
    if (started !== mine) identify(); // nor as the last customer's: this page may still name them
    if (from !== null) closedHere.add(from);
    if (joined) closedHere.add(conversationId); // its messages still out there are shown answered, or sent on
    conversationId = id;
    if (from !== null && lastAnswered && lastAnswered.conversation === from) goesOnFrom(from, lastAnswered.id);
    startOver(from !== null, joined);
    if (joined) sync(); // what the tabs that went on there said, below what this one showed
  });

  // Why /api/widget failed, for the page's developer: a CORS refusal (every message then ends Not sent) reads to the
  // page as a device offline or a bot down does. A request that needs no CORS, its answer unread, reaches a bot that
  // is up: only then was the page's origin refused, and only then is channels.web.origins named.
  // A frame sandboxed without allow-same-origin asks as the origin "null" (window.origin), whatever its address
  // (location.origin) says: listing that address would change nothing, and the bot refuses "null" as any page could.
  async function explainFailure(error) {
    const failed = `deskbot: ${server}/api/widget failed (${error.message})`;
    const waitForPolicy = new Promise((resolve) => setTimeout(resolve, 1000, false));
    if (error.lost && (await Promise.race([refusedByPolicy, waitForPolicy]))) {
      console.error(`${failed}: this page's Content-Security-Policy refuses it; add ${new URL(server).origin} and ` +
        `${new URL(socketUrl).origin} to its connect-src (docs/channels.md).`);
      return;
    }
    const refused = error.lost && error.name === "TypeError" && navigator.onLine !== false &&
      (await fetch(`${server}/api/widget`, { mode: "no-cors", signal: timeoutSignal(15000) }).then(() => true, () => false));
    const why = window.origin === "null" ? ": this page is in a frame sandboxed without allow-same-origin, whose " +
      "requests the bot refuses (their origin is \"null\"); add allow-same-origin to the frame's sandbox."
      : `: this page's origin (${location.origin}) may need to be listed in channels.web.origins in the bot's bot.yml.`;
    console.error(refused ? `${failed}${why}` : `${failed}${error.lost ? ": the bot could not be reached" : ""}.`);
  }

  async function start() {
    label();
    attach();
    repaintOnRestyle();
    const left = store.get("open"); // as the customer left it on the site's last page, else as the config says
    if (left === null ? config.open : left === "1") open(false);
    const configured = api("GET", "/api/widget").then((settings) => {
      serverTitle = settings.title || null;
      serverTitleTraditional = { traditional: settings.title_traditional, hongkong: settings.title_hongkong };
      botLanguage = settings.language;
      if (!chosenLang && known(settings.language) && settings.language !== spoken()) { // a zh-TW page keeps its script
        lang = settings.language;
        t = strings(lang);
      }
      label();
      speakAs(customerLanguage());
      if (settings.max_message_chars > 0) maxChars = settings.max_message_chars;
      if (settings.readable) readable = new RegExp(settings.readable);
      if (settings.user_id) {
        userIdPattern = new RegExp(settings.user_id, "u"); // by code point, as the server reads it
        if (user.user !== undefined && !userIdPattern.test(user.user)) identify(named);
      }
    }).catch(explainFailure); // not waited for: the chat starts meanwhile
    // Read as the settings are, shown once they are in: the history's labels ("You", "Helpful") in the language the
    // settings may change. One after the other, they cost a slow network's round trip more before the chat showed.
    // The conversation this browser kept may be a signed-in customer's whose page did not call Deskbot.reset() at
    // sign-out: refused to anyone else, it gives way to a new one rather than leave every message refused.
    const read = readHistory().catch((error) => {
      if (signedInElsewhere(error)) {
        signedOut();
        newConversation();
      }
      return null;
    });
    await configured;
    const turns = await loadHistory(read);
    if (!turns.length) greet();
    resumeOut(); // before the socket's first sync(), which would take them for another tab's
    loaded();
    // The log speaks up once the history and the greeting are in it, and the browser has drawn them: a chat left open
    // had a screen reader read the whole conversation out again on each of the site's pages.
    requestAnimationFrame(() => setTimeout(() => log.setAttribute("aria-live", "polite")));
    connect();
    schedulePoll();
  }

  window.Deskbot = {
    open: () => open(),
    close,
    attach,
    reset,
    // The socket joins again as the customer named: joined as the visitor's, it stopped hearing the conversation
    // (their agent's replies, the turns of their other tabs) once they wrote in it in another tab, making it theirs.
    identify: (customer) => {
      identify(customer);
      if (socket && socket.readyState === OPEN) join(socket);
    },
    setTheme,
    conversationId: () => conversationId,
    connected: () => Boolean(socket && socket.readyState === OPEN),
  };
  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start, { once: true });
})();
