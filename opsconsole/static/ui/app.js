// The opsconsole web console: log in with a one-time ticket, then a REPL in xterm.js over a
// websocket, beside buttons that fetch the text dumps. No framework, no build step; the
// server's CSP allows scripts and styles from this origin only, so nothing here is inline.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const USED_LINK = "This link is used or expired; run `opsconsole open URL` again.";
  const NO_SESSION = "You are not logged in, or your session has expired.";

  // What the server means by each websocket close code (see transport/terminal.py).
  const CLOSE_REASONS = {
    1000: "session ended",
    1003: "the server did not understand a message",
    1006: "connection lost",
    1008: "authentication expired or revoked",
    1009: "message too big",
    1011: "server error",
  };

  // The dump routes, keyed by the buttons' data-dump. The page decides the URLs, not the DOM.
  const DUMPS = {
    threads: "/ops/threads",
    gc: "/ops/gc",
    process: "/ops/process",
    objects: "/ops/objects",
    growth: "/ops/objects/growth",
  };

  let term = null; // the xterm.js Terminal while the console is shown
  let fit = null; // its fit add-on
  let socket = null; // its websocket
  let dumpSeq = 0; // only the latest dump request may write the panel
  let who = null; // {user, role} while logged in

  // -- CSP --------------------------------------------------------------------------------

  // xterm.js 6's DOM renderer styles the terminal by writing CSS text into <style> elements
  // it creates, and 24-bit colours into style="" attributes of its cells. `style-src 'self'`
  // blocks both (even an empty <style> is reported), and the terminal would render without
  // its layout rules. The CSP does not govern the CSSOM, so the same CSS goes through it:
  // - document.createElement("style") hands xterm an inert comment node whose textContent
  //   feeds a constructable stylesheet adopted by the document;
  // - setAttribute("style", css) on a <span> (xterm's cells) becomes element.style.cssText.
  // Nothing else on this page creates <style> elements or sets style attributes.
  function routeInlineStylesThroughCssom() {
    const createElement = document.createElement.bind(document);
    document.createElement = (tagName, options) => {
      if (String(tagName).toLowerCase() !== "style") {
        return createElement(tagName, options);
      }
      const sheet = new CSSStyleSheet();
      document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
      const standIn = document.createComment("xterm.js styles: see document.adoptedStyleSheets");
      let text = "";
      Object.defineProperty(standIn, "textContent", {
        get: () => text,
        set: (value) => {
          text = String(value ?? "");
          sheet.replaceSync(text);
        },
      });
      // xterm removes its style elements when a terminal is disposed: drop the sheet too.
      const remove = standIn.remove.bind(standIn);
      standIn.remove = () => {
        document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== sheet);
        remove();
      };
      return standIn;
    };
    const setAttribute = HTMLSpanElement.prototype.setAttribute;
    HTMLSpanElement.prototype.setAttribute = function (name, value) {
      if (String(name).toLowerCase() === "style") {
        this.style.cssText = String(value);
      } else {
        setAttribute.call(this, name, value);
      }
    };
  }

  // -- HTTP -------------------------------------------------------------------------------

  // The HttpOnly session cookie authenticates every call; the page never sees a token.
  function request(method, path, body) {
    const init = { method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init);
  }

  const errorMessage = window.opsHttp.errorMessage;

  // -- what is on screen ------------------------------------------------------------------

  function setStatus(text, bad = false) {
    $("status").textContent = text;
    $("status").classList.toggle("bad", bad);
  }

  function showLogin(lead) {
    closeTerminal();
    who = null;
    window.opsMemory.hide();
    $("views").hidden = true;
    $("memory").hidden = true;
    $("console").hidden = true;
    $("logout").hidden = true;
    $("reconnect").hidden = true;
    $("who").textContent = "";
    setStatus("");
    $("login-lead").textContent = lead;
    $("login").hidden = false;
  }

  function showConsole(whoami) {
    who = whoami;
    $("who").textContent = `${who.user} (${who.role})`;
    $("login").hidden = true;
    $("views").hidden = false;
    $("logout").hidden = false;
    openTerminal();
    showView(firstView);
  }

  // The terminal (with its dump panel) or the memory dashboard; the terminal's session stays
  // open while the dashboard is shown.
  function showView(name) {
    for (const button of document.querySelectorAll("button[data-view]")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === name));
    }
    $("console").hidden = name !== "console";
    $("memory").hidden = name !== "memory";
    if (name === "memory") {
      window.opsMemory.show(who);
    } else {
      window.opsMemory.hide();
      queueRefit();
    }
  }

  // -- login ------------------------------------------------------------------------------

  // The ticket arrives in the fragment (never sent to a server, so never logged). It is
  // single use: take it out of the address bar and history before anything else.
  // `#view=memory` (alone or beside the ticket) opens on the memory dashboard.
  let firstView = "console";

  function takeTicket() {
    const params = new URLSearchParams(location.hash.slice(1));
    const ticket = params.get("ticket");
    firstView = params.get("view") === "memory" ? "memory" : "console";
    if (location.hash.includes("ticket=")) {
      history.replaceState(null, "", location.pathname);
    }
    return ticket;
  }

  async function start() {
    const ticket = takeTicket();
    let resp;
    try {
      resp =
        ticket !== null
          ? await request("POST", "/ops/auth/redeem", { ticket })
          : await request("GET", "/ops/whoami");
    } catch (err) {
      showLogin(`The console did not answer (${err.message}).`);
      return;
    }
    if (resp.status === 401) {
      showLogin(ticket !== null ? USED_LINK : NO_SESSION);
    } else if (!resp.ok) {
      showLogin(await errorMessage(resp));
    } else {
      showConsole(await resp.json());
    }
  }

  async function logout() {
    try {
      await request("POST", "/ops/auth/logout");
    } catch {
      // The server may be gone; the page forgets the session either way.
    }
    showLogin("You are logged out.");
  }

  // -- the terminal -----------------------------------------------------------------------

  function openTerminal() {
    closeTerminal();
    $("reconnect").hidden = true;
    term = new Terminal({
      cursorBlink: true,
      fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono").trim(),
      fontSize: 14,
      // At line height 1 the DOM renderer clips the underscore (it sits at the very bottom of
      // the glyph box) and `a_b` reads as `a b`.
      lineHeight: 1.15,
      scrollback: 5000,
      // ptpython draws numbers and hints in bright black; xterm's default (#666) is too dim on
      // this background.
      theme: { background: "#0f1419", foreground: "#d8dee4", brightBlack: "#8b949e" },
    });
    fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($("terminal"));
    fit.fit();
    term.focus();

    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(
      `${scheme}://${location.host}/ops/terminal?rows=${term.rows}&cols=${term.cols}`,
    );
    socket = ws;
    const send = (frame) => {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(JSON.stringify(frame));
      }
    };
    const own = term; // handlers below outlive a reconnect; they must touch only their terminal

    setStatus("connecting…");
    ws.onopen = () => {
      setStatus("connected");
      // The size may have changed while the socket was opening.
      send(["set_size", own.rows, own.cols]);
    };
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (Array.isArray(frame) && frame[0] === "stdout" && typeof frame[1] === "string") {
        own.write(frame[1]);
      }
    };
    ws.onclose = (event) => {
      if (socket !== ws) {
        return; // closed on purpose (log out, new session)
      }
      socket = null;
      const what = CLOSE_REASONS[event.code] || "closed";
      const reason = event.reason ? `: ${event.reason}` : "";
      own.write(`\r\n\x1b[33m[terminal closed: ${event.code} ${what}${reason}]\x1b[0m\r\n`);
      // No automatic reconnect: a new session is the operator's decision. 1008 is mostly an
      // expired or revoked session (also a flood or a client that stopped reading).
      const hint = event.code === 1008 ? "; if the session is over, run `opsconsole open URL` again" : "";
      setStatus(`closed (${event.code} ${what})${hint}`, event.code !== 1000);
      $("reconnect").hidden = false;
    };

    own.onData((data) => send(["stdin", data]));
    // Fires only when fit() changed rows or cols.
    own.onResize(({ rows, cols }) => send(["set_size", rows, cols]));
  }

  function closeTerminal() {
    const ws = socket;
    socket = null;
    if (ws !== null && ws.readyState <= WebSocket.OPEN) {
      ws.close(1000, "closed by the page");
    }
    if (term !== null) {
      term.dispose();
      term = null;
      fit = null;
    }
  }

  // Resize events come in bursts: refit once per frame.
  let refitQueued = false;
  function queueRefit() {
    if (refitQueued || term === null) {
      return;
    }
    refitQueued = true;
    requestAnimationFrame(() => {
      refitQueued = false;
      if (fit !== null) {
        fit.fit();
      }
    });
  }

  // -- the dump panel ---------------------------------------------------------------------

  async function showDump(title, path, params) {
    const seq = ++dumpSeq;
    const query = new URLSearchParams({ ...params, format: "text" });
    const titleEl = $("dump-title");
    const output = $("dump-output");
    titleEl.textContent = `${title}: loading…`;
    titleEl.classList.remove("bad");
    let text;
    let ok = false;
    try {
      const resp = await request("GET", `${path}?${query}`);
      ok = resp.ok;
      text = ok ? await resp.text() : await errorMessage(resp);
    } catch (err) {
      text = `request failed: ${err.message}`;
    }
    if (seq !== dumpSeq) {
      return; // a later click owns the panel now
    }
    titleEl.textContent = `${title} · ${new Date().toLocaleTimeString()}`;
    titleEl.classList.toggle("bad", !ok);
    output.textContent = text; // text only: a dump may contain anything
    output.scrollTop = 0;
  }

  function heapDiff() {
    const base = $("diff-base").value.trim();
    const other = $("diff-other").value.trim();
    if (!base) {
      dumpSeq++; // a dump still loading must not overwrite this
      $("dump-title").textContent = "heap diff: enter the base snapshot's name";
      $("dump-title").classList.add("bad");
      $("diff-base").focus();
      return;
    }
    // Without `other` the server compares the base with the heap now.
    const params = other ? { base, other } : { base };
    showDump(`heap diff ${base} → ${other || "now"}`, "/ops/heap/diff", params);
  }

  // -- wiring -----------------------------------------------------------------------------

  routeInlineStylesThroughCssom();
  for (const button of document.querySelectorAll("button[data-dump]")) {
    const name = button.dataset.dump;
    button.addEventListener("click", () => showDump(name, DUMPS[name], {}));
  }
  $("diff").addEventListener("click", heapDiff);
  for (const id of ["diff-base", "diff-other"]) {
    $(id).addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        heapDiff();
      }
    });
  }
  for (const button of document.querySelectorAll("button[data-view]")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  $("logout").addEventListener("click", logout);
  $("reconnect").addEventListener("click", openTerminal);
  window.addEventListener("resize", queueRefit);
  // A new link pasted into this tab only changes the fragment: no reload, so log in here.
  window.addEventListener("hashchange", () => {
    if (location.hash.includes("ticket=")) {
      start();
    }
  });
  start();
})();
