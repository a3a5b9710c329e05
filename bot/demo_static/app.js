// carebot demo page: draws the local Bot API server's chats and acts through /api/*.
// Plain JavaScript, no libraries, no network beyond this server.
"use strict";

const CUSTOMER_CHIPS = ["/start", "/help", "/complaint", "/profile", "/language"];
const STAFF_CHIPS = ["/claim", "/card", "/canned", "/note ", "/close", "/reopen"];
const KINDS = ["photo", "document", "voice", "video", "sticker"];
const SAFE_LINK = /^(https?:|tg:)/i;

let strings = {};
let lang = localStorage.getItem("carebot-demo-lang") ||
  ((navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en");
let state = null;
let customerId = Number(localStorage.getItem("carebot-demo-customer")) || null;
let topicId = null;
let toastsSeen = -1;
const seenMessages = {};  // persona id -> how many of their messages the visitor has seen

const $ = (id) => document.getElementById(id);

function t(key, params) {
  let text = (strings[lang] && strings[lang][key]) || (strings.en && strings.en[key]) || key;
  for (const [name, value] of Object.entries(params || {})) text = text.replace(`{${name}}`, value);
  return text;
}

function translatePage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const node of document.querySelectorAll("[data-t-placeholder]")) {
    node.placeholder = t(node.dataset.tPlaceholder);
  }
  $("lang").textContent = t("language_switch");
  $("next-day").title = t("next_day_hint");
}

// A shop date ("2025-06-12") as the visitor's language writes it.
function shopDate(iso) {
  return new Date(`${iso}T00:00:00Z`).toLocaleDateString(lang === "zh" ? "zh-CN" : "en-GB",
    { timeZone: "UTC", weekday: "short", year: "numeric", month: "short", day: "numeric" });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Telegram's entities (offsets in UTF-16 units, as JavaScript strings count) as DOM nodes.
function formatted(text, entities) {
  const box = el("div", "text");
  const cuts = new Set([0, text.length]);
  for (const e of entities || []) { cuts.add(e.offset); cuts.add(e.offset + e.length); }
  const points = [...cuts].filter((p) => p >= 0 && p <= text.length).sort((a, b) => a - b);
  for (let i = 0; i + 1 < points.length; i++) {
    const [start, end] = [points[i], points[i + 1]];
    let node = document.createTextNode(text.slice(start, end));
    for (const e of entities || []) {
      if (e.offset > start || e.offset + e.length < end) continue;
      const wrap = {
        bold: "strong", italic: "em", underline: "u", strikethrough: "s", code: "code",
        pre: "code", spoiler: "mark", blockquote: "q", expandable_blockquote: "q",
      }[e.type];
      let outer = null;
      if (wrap) outer = el(wrap);
      else if (e.type === "text_link" && SAFE_LINK.test(e.url || "")) {
        outer = el("a"); outer.href = e.url; outer.target = "_blank"; outer.rel = "noopener";
      } else if (e.type === "url" && /^https?:/i.test(node.textContent)) {
        outer = el("a"); outer.href = node.textContent; outer.target = "_blank"; outer.rel = "noopener";
      }
      if (outer) { outer.appendChild(node); node = outer; }
    }
    box.appendChild(node);
  }
  return box;
}

function messageNode(message, actor) {
  if (message.from === "service") {
    const key = { forum_topic_created: "topic_created", forum_topic_edited: "topic_edited",
      forum_topic_closed: "topic_closed", forum_topic_reopened: "topic_reopened" }[message.service];
    return el("div", "service", t(key || message.service, { name: message.text }));
  }
  const bubble = el("div", `bubble ${message.from}`);
  if (message.from === "other") bubble.appendChild(el("div", "author", message.author));
  if (KINDS.includes(message.kind)) bubble.appendChild(el("div", "kind", t(`kind_${message.kind}`)));
  if (message.kind === "contact") bubble.appendChild(el("div", "kind", t("kind_contact")));
  if (message.text) bubble.appendChild(formatted(message.text, message.entities));
  if (message.edited) bubble.appendChild(el("div", "edited", t("edited")));
  for (const row of message.buttons || []) {
    const line = el("div", "buttons");
    for (const button of row) {
      if (button.url) {
        const link = el("a", "inline", button.text);
        if (SAFE_LINK.test(button.url)) { link.href = button.url; link.target = "_blank"; link.rel = "noopener"; }
        line.appendChild(link);
        continue;
      }
      const press = el("button", "inline", button.text);
      press.type = "button";
      press.onclick = () => act("/api/press", { persona: actor, message: message.id, data: button.data });
      line.appendChild(press);
    }
    bubble.appendChild(line);
  }
  return bubble;
}

function drawLog(box, messages, actor) {
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.replaceChildren(...(messages.length ? messages.map((m) => messageNode(m, actor))
    : [el("p", "muted", t("empty"))]));
  if (atBottom || !box.dataset.drawn) box.scrollTop = box.scrollHeight;
  box.dataset.drawn = "1";
}

function chips(box, commands, send) {
  box.replaceChildren(...commands.map((command) => {
    const chip = el("button", "chip", command.trim());
    chip.type = "button";
    chip.onclick = () => send(command);
    return chip;
  }));
}

function currentCustomer() {
  return state.customers.find((c) => c.id === customerId) || state.customers[0];
}

function draw() {
  if (!state) return;
  const customer = currentCustomer();
  customerId = customer.id;
  $("personas").replaceChildren(...state.customers.map((c) => {
    if (c.id === customer.id || seenMessages[c.id] === undefined) seenMessages[c.id] = c.messages.length;
    const tab = el("button", c.id === customer.id ? "tab active" : "tab", `${c.name} (${c.language})`);
    const unread = c.messages.length - seenMessages[c.id];
    if (unread > 0) tab.appendChild(el("span", "unread", `${unread} ${t("unread")}`));
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.onclick = () => { customerId = c.id; localStorage.setItem("carebot-demo-customer", c.id); delete $("customer-log").dataset.drawn; draw(); };
    return tab;
  }));
  $("persona-note").textContent = t(customer.note);
  drawLog($("customer-log"), customer.messages, customer.id);
  const keyboard = $("customer-keyboard");
  keyboard.replaceChildren(...(customer.keyboard || []).map((row) => {
    const line = el("div", "buttons");
    for (const button of row) {
      const key = el("button", "reply-key", button.text);
      key.type = "button";
      key.onclick = () => (button.contact
        ? act("/api/contact", { persona: customer.id })
        : act("/api/send", { persona: customer.id, text: button.text }));
      line.appendChild(key);
    }
    return line;
  }));
  $("share-phone").hidden = !customer.phone;

  const staff = state.staff;
  $("staff-note").textContent = t(staff.note);
  const topics = [{ id: null, name: t("general"), closed: false }, ...staff.topics];
  if (!topics.some((topic) => topic.id === topicId)) topicId = null;
  $("topics").replaceChildren(...topics.map((topic) => {
    const item = el("li");
    const pick = el("button", topic.id === topicId ? "topic active" : "topic", topic.name);
    pick.type = "button";
    if (topic.closed) pick.appendChild(el("span", "badge", t("closed")));
    pick.onclick = () => { topicId = topic.id; delete $("staff-log").dataset.drawn; draw(); };
    item.appendChild(pick);
    return item;
  }));
  const inTopic = staff.messages.filter((m) => (m.thread || null) === topicId ||
    (m.from === "service" && m.id === topicId));
  drawLog($("staff-log"), inTopic, staff.id);

  const clock = state.clock;
  $("next-day").hidden = !clock;
  $("shop-date").textContent = clock ? t("shop_date", { date: shopDate(clock.date) }) +
    (clock.day > 0 ? ` ${t("days_ahead", { days: clock.day })}` : "") : "";

  const dashboard = $("dashboard");
  dashboard.hidden = !state.dashboard;
  if (state.dashboard) dashboard.href = state.dashboard;
  $("no-dashboard").hidden = Boolean(state.dashboard);

  for (const toast of state.toasts) {
    if (toast.seq <= toastsSeen) continue;
    toastsSeen = toast.seq;
    showToast(toast.text, toast.alert);
  }
}

function showToast(text, alert) {
  const toast = el("div", alert ? "toast alert" : "toast", text);
  $("toasts").appendChild(toast);
  setTimeout(() => toast.remove(), alert ? 8000 : 4000);
}

async function act(path, body) {
  try {
    const response = await fetch(path, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    if (!response.ok) showToast(t("error", { error: await response.text() }), true);
    else return await response.json();
  } catch (error) {
    showToast(t("error", { error: String(error) }), true);
  }
  return null;
}

async function nextDay() {
  const button = $("next-day");
  button.disabled = true;
  try {
    const day = await act("/api/next-day", {});
    if (day) showToast(t("next_day_done", { ...day, date: shopDate(day.date) }), false);
  } finally {
    button.disabled = false;
  }
}

async function poll() {
  let failures = 0;
  for (;;) {
    try {
      const since = state ? `?since=${encodeURIComponent(state.version)}` : "";
      const response = await fetch(`/api/state${since}`);
      if (!response.ok) throw new Error(response.statusText);
      const next = await response.json();
      if (toastsSeen < 0 && !state) toastsSeen = Math.max(-1, ...next.toasts.map((x) => x.seq));
      state = next;
      failures = 0;
      $("offline").hidden = true;
      draw();
    } catch (error) {
      failures += 1;
      if (failures > 2) $("offline").hidden = false;
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * failures)));
    }
  }
}

function sendFrom(input, body) {
  const text = input.value;
  if (!text.trim()) return;
  input.value = "";
  act("/api/send", { ...body(), text });
}

async function main() {
  strings = await (await fetch("/static/strings.json")).json();
  translatePage();
  $("lang").onclick = () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("carebot-demo-lang", lang);
    translatePage();
    draw();
  };
  $("customer-form").onsubmit = (event) => {
    event.preventDefault();
    sendFrom($("customer-text"), () => ({ persona: customerId }));
  };
  $("staff-form").onsubmit = (event) => {
    event.preventDefault();
    sendFrom($("staff-text"), () => ({ persona: state.staff.id, thread: topicId }));
  };
  $("share-phone").onclick = () => act("/api/contact", { persona: customerId });
  $("next-day").onclick = nextDay;
  chips($("customer-chips"), CUSTOMER_CHIPS, (text) => act("/api/send", { persona: customerId, text }));
  chips($("staff-chips"), STAFF_CHIPS, (command) => {
    if (command.endsWith(" ")) { $("staff-text").value = command; $("staff-text").focus(); return; }
    act("/api/send", { persona: state.staff.id, text: command, thread: topicId });
  });
  poll();
}

main();
