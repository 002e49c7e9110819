// Reviewer portal: queue, task loading and the box / classification / verification editors.
// Talks only to /portal/api/*; every POST carries the session's CSRF token.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const SVG = "http://www.w3.org/2000/svg";
  const NONE = "None of the Above";
  const $ = (id) => document.getElementById(id);
  const state = { task: null, boxes: [], selected: -1, label: 0, choice: null, verdicts: {}, drag: null, size: null };

  async function api(method, url, body) {
    const init = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    if (response.status === 401) { window.location.assign("/login"); throw new Error("signed out"); }
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  function say(text) {
    $("status").textContent = text;
    if (text) setTimeout(() => { if ($("status").textContent === text) $("status").textContent = ""; }, 4000);
  }

  // --- queue -------------------------------------------------------------------------------
  async function loadQueue(openFirst) {
    const { tasks } = await api("GET", "/portal/api/queue");
    const list = $("queue-list");
    list.replaceChildren();
    for (const t of tasks) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.name = t.name;
      b.textContent = t.name;
      b.title = `${t.taskType} · ${t.routeReason || ""} · expires ${t.expiresAt}`;
      if (state.task && state.task.name === t.name) b.classList.add("current");
      b.addEventListener("click", () => openTask(t.name));
      li.append(b);
      list.append(li);
    }
    $("queue-count").textContent = String(tasks.length);
    $("queue-empty").hidden = tasks.length > 0;
    if (openFirst && !state.task && tasks.length) await openTask(tasks[0].name);
    if (!tasks.length && !state.task) showIdle();
  }

  function showIdle() {
    $("task").hidden = true;
    $("idle").hidden = false;
  }

  async function openTask(name) {
    try {
      const task = await api("POST", `/portal/api/tasks/${encodeURIComponent(name)}`);
      state.task = task;
      state.selected = -1;
      state.label = 0;
      state.verdicts = {};
      state.choice = null;
      $("task-title").textContent = task.title;
      $("task-description").textContent = task.description;
      $("task-instructions").textContent = task.instructions || "";
      $("task-instructions").hidden = !task.instructions;
      $("task-name").textContent = task.name;
      $("task-reason").textContent = task.routeReason || "review";
      $("box-tools").hidden = task.taskType !== "BoundingBox";
      $("class-tools").hidden = task.taskType !== "ImageClassification";
      $("verify-tools").hidden = task.taskType !== "LabelVerification";
      $("overlay").style.display = task.taskType === "BoundingBox" ? "" : "none";
      $("task").hidden = false;
      $("idle").hidden = true;
      prefill(task);
      const img = $("task-image");
      img.onload = () => {
        state.size = { width: img.naturalWidth, height: img.naturalHeight };
        $("overlay").setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
        $("stage").dataset.ready = "true";
        draw();
      };
      $("stage").dataset.ready = "false";
      img.src = task.imageUrl;
      for (const b of document.querySelectorAll("#queue-list button")) b.classList.toggle("current", b.dataset.name === name);
    } catch (err) {
      say(`Could not open ${name}: ${err.message}`);
      state.task = null;
      await loadQueue(true);
    }
  }

  function prefill(task) {
    const initial = task.initialValue;
    if (task.taskType === "BoundingBox") {
      state.boxes = (Array.isArray(initial) ? initial : [])
        .filter((b) => b && typeof b.left === "number")
        .map((b) => ({ label: task.labels.includes(b.label) ? b.label : task.labels[0], left: b.left, top: b.top, width: b.width, height: b.height }));
      renderPalette();
    } else if (task.taskType === "ImageClassification") {
      const first = Array.isArray(initial) ? initial[0] : initial;
      const label = first && typeof first === "object" ? first.label : first;
      state.choice = task.labels.includes(label) ? label : null;
      renderChoices();
    } else {
      for (const label of task.verifyLabels) state.verdicts[label] = null;
      renderVerdicts();
    }
  }

  // --- bounding boxes ------------------------------------------------------------------------
  function renderPalette() {
    const ol = $("label-palette");
    ol.replaceChildren();
    state.task.labels.forEach((label, i) => {
      const li = document.createElement("li");
      li.textContent = label;
      li.className = i === state.label ? "current" : "";
      li.addEventListener("click", () => chooseLabel(i));
      ol.append(li);
    });
  }

  function chooseLabel(i) {
    if (i < 0 || i >= state.task.labels.length) return;
    state.label = i;
    if (state.selected >= 0) state.boxes[state.selected].label = state.task.labels[i];
    renderPalette();
    draw();
  }

  function clamp(box) {
    const { width: W, height: H } = state.size;
    box.width = Math.max(1, Math.min(box.width, W));
    box.height = Math.max(1, Math.min(box.height, H));
    box.left = Math.max(0, Math.min(box.left, W - box.width));
    box.top = Math.max(0, Math.min(box.top, H - box.height));
    return box;
  }

  function el(name, attrs) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function draw() {
    const svg = $("overlay");
    svg.replaceChildren();
    if (!state.size) return;
    const handle = Math.max(6, Math.round(Math.min(state.size.width, state.size.height) / 60));
    state.boxes.forEach((b, i) => {
      const rect = el("rect", { x: b.left, y: b.top, width: b.width, height: b.height, class: i === state.selected ? "box selected" : "box", "data-index": i });
      svg.append(rect);
      const tag = el("text", { x: b.left + 4, y: Math.max(handle * 2, b.top - 4), class: "tag", "font-size": handle * 2.2 });
      tag.textContent = `${i + 1}: ${b.label}`;
      svg.append(tag);
      if (i === state.selected) {
        for (const [corner, x, y] of [["nw", b.left, b.top], ["ne", b.left + b.width, b.top], ["sw", b.left, b.top + b.height], ["se", b.left + b.width, b.top + b.height]]) {
          svg.append(el("rect", { x: x - handle / 2, y: y - handle / 2, width: handle, height: handle, class: "handle", "data-corner": corner, "data-index": i }));
        }
      }
    });
    const list = $("box-list");
    list.replaceChildren();
    state.boxes.forEach((b, i) => {
      const li = document.createElement("li");
      li.className = i === state.selected ? "selected" : "";
      const select = document.createElement("select");
      select.setAttribute("aria-label", `label of box ${i + 1}`);
      for (const label of state.task.labels) select.append(new Option(label, label, false, label === b.label));
      select.addEventListener("change", () => { b.label = select.value; draw(); });
      const del = document.createElement("button");
      del.type = "button";
      del.textContent = "Delete";
      del.addEventListener("click", () => { removeBox(i); });
      li.append(select, ` ${Math.round(b.width)}×${Math.round(b.height)} `, del);
      li.addEventListener("click", (e) => { if (e.target === li) { state.selected = i; draw(); } });
      list.append(li);
    });
  }

  function removeBox(i) {
    state.boxes.splice(i, 1);
    state.selected = state.boxes.length ? Math.min(i, state.boxes.length - 1) : -1;
    draw();
  }

  function point(event) {
    const svg = $("overlay");
    const p = svg.createSVGPoint();
    p.x = event.clientX;
    p.y = event.clientY;
    const q = p.matrixTransform(svg.getScreenCTM().inverse());
    return { x: Math.max(0, Math.min(q.x, state.size.width)), y: Math.max(0, Math.min(q.y, state.size.height)) };
  }

  $("overlay").addEventListener("mousedown", (event) => {
    if (!state.size || event.button !== 0) return;
    event.preventDefault();
    const p = point(event);
    const target = event.target;
    const index = target.dataset ? Number(target.dataset.index) : NaN;
    if (target.classList.contains("handle")) {
      state.drag = { kind: "resize", corner: target.dataset.corner, index, origin: p, start: { ...state.boxes[index] } };
    } else if (target.classList.contains("box")) {
      state.selected = index;
      state.drag = { kind: "move", index, origin: p, start: { ...state.boxes[index] } };
    } else {
      state.boxes.push({ label: state.task.labels[state.label], left: p.x, top: p.y, width: 1, height: 1 });
      state.selected = state.boxes.length - 1;
      state.drag = { kind: "draw", index: state.selected, origin: p };
    }
    draw();
  });

  window.addEventListener("mousemove", (event) => {
    const drag = state.drag;
    if (!drag) return;
    const p = point(event);
    const box = state.boxes[drag.index];
    const dx = p.x - drag.origin.x;
    const dy = p.y - drag.origin.y;
    if (drag.kind === "move") {
      Object.assign(box, { left: drag.start.left + dx, top: drag.start.top + dy });
      clamp(box);
    } else if (drag.kind === "draw") {
      Object.assign(box, { left: Math.min(p.x, drag.origin.x), top: Math.min(p.y, drag.origin.y), width: Math.abs(dx), height: Math.abs(dy) });
    } else {
      const s = drag.start;
      let [x1, y1, x2, y2] = [s.left, s.top, s.left + s.width, s.top + s.height];
      if (drag.corner.includes("w")) x1 += dx; else x2 += dx;
      if (drag.corner.includes("n")) y1 += dy; else y2 += dy;
      Object.assign(box, { left: Math.min(x1, x2), top: Math.min(y1, y2), width: Math.abs(x2 - x1), height: Math.abs(y2 - y1) });
    }
    draw();
  });

  window.addEventListener("mouseup", () => {
    const drag = state.drag;
    state.drag = null;
    if (!drag) return;
    const box = state.boxes[drag.index];
    if (box && (box.width < 2 || box.height < 2)) removeBox(drag.index);
    else if (box) { clamp(box); draw(); }
  });

  function nudge(event) {
    const box = state.boxes[state.selected];
    if (!box) return false;
    const step = event.shiftKey ? 10 : 1;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[event.key];
    if (!d) return false;
    if (event.altKey) { box.width += d[0]; box.height += d[1]; } else { box.left += d[0]; box.top += d[1]; }
    clamp(box);
    draw();
    return true;
  }

  // --- classification and verification -------------------------------------------------------
  function renderChoices() {
    const root = $("class-options");
    root.replaceChildren();
    [...state.task.labels, NONE].forEach((label, i) => {
      const id = `choice-${i}`;
      const wrap = document.createElement("div");
      const input = Object.assign(document.createElement("input"), { type: "radio", name: "choice", id, value: label, checked: state.choice === label });
      input.addEventListener("change", () => { state.choice = label; });
      const lab = Object.assign(document.createElement("label"), { htmlFor: id, textContent: ` ${label === NONE ? 0 : i + 1}. ${label}` });
      wrap.append(input, lab);
      root.append(wrap);
    });
  }

  function renderVerdicts() {
    const root = $("verify-options");
    root.replaceChildren();
    for (const label of state.task.verifyLabels) {
      const li = document.createElement("li");
      li.append(`${label}: `);
      for (const [text, value] of [["yes", true], ["no", false]]) {
        const input = Object.assign(document.createElement("input"), { type: "radio", name: `verify-${label}`, checked: state.verdicts[label] === value });
        input.addEventListener("change", () => { state.verdicts[label] = value; });
        const lab = document.createElement("label");
        lab.append(input, ` ${text} `);
        li.append(lab);
      }
      root.append(li);
    }
  }

  function verifyNext(value) {
    const pending = state.task.verifyLabels.find((l) => state.verdicts[l] === null);
    if (pending === undefined) return;
    state.verdicts[pending] = value;
    renderVerdicts();
  }

  // --- submit / skip ------------------------------------------------------------------------
  function answer() {
    const task = state.task;
    if (task.taskType === "BoundingBox") {
      return {
        annotatedResult: {
          boundingBoxes: state.boxes.map((b) => ({ label: b.label, left: Math.round(b.left), top: Math.round(b.top), width: Math.max(1, Math.round(b.width)), height: Math.max(1, Math.round(b.height)) })),
          inputImageProperties: { width: state.size.width, height: state.size.height },
        },
      };
    }
    if (task.taskType === "ImageClassification") {
      if (state.choice === null) throw new Error("choose a label first");
      return { category: { label: state.choice } };
    }
    const missing = task.verifyLabels.filter((l) => state.verdicts[l] === null);
    if (missing.length) throw new Error(`answer yes or no for: ${missing.join(", ")}`);
    return { labelVerification: { labels: task.verifyLabels.map((l) => ({ label: l, verified: state.verdicts[l] })) } };
  }

  async function finish(kind) {
    const task = state.task;
    if (!task) return;
    try {
      if (kind === "submit") {
        if (!state.size) throw new Error("the image is still loading");
        await api("POST", `/portal/api/tasks/${encodeURIComponent(task.name)}/answer`, { answer: answer() });
        say(`Submitted ${task.name}`);
      } else {
        await api("POST", `/portal/api/tasks/${encodeURIComponent(task.name)}/skip`);
        say(`Skipped ${task.name}`);
      }
      state.task = null;
      state.size = null;
      await loadQueue(true);
    } catch (err) {
      say(`Not sent: ${err.message}`);
    }
  }

  $("submit").addEventListener("click", () => finish("submit"));
  $("skip").addEventListener("click", () => finish("skip"));
  $("refresh").addEventListener("click", () => loadQueue(true));

  document.addEventListener("keydown", (event) => {
    // Typing in a field keeps its keys; a radio button (class, yes/no) leaves the shortcuts on.
    if (!state.task || event.target.closest("select, textarea, input:not([type=radio])")) return;
    const type = state.task.taskType;
    let handled = true;
    if (event.key === "Enter") finish("submit");
    else if (event.key === "s" || event.key === "S") finish("skip");
    else if (/^[1-9]$/.test(event.key)) {
      const i = Number(event.key) - 1;
      if (type === "BoundingBox") chooseLabel(i);
      else if (type === "ImageClassification" && i < state.task.labels.length) { state.choice = state.task.labels[i]; renderChoices(); }
    } else if (event.key === "0" && type === "ImageClassification") { state.choice = NONE; renderChoices(); }
    else if (type === "LabelVerification" && (event.key === "y" || event.key === "n")) verifyNext(event.key === "y");
    else if (type === "BoundingBox" && (event.key === "Delete" || event.key === "Backspace") && state.selected >= 0) removeBox(state.selected);
    else if (type === "BoundingBox" && event.key === "Tab" && state.boxes.length) {
      state.selected = (state.selected + (event.shiftKey ? state.boxes.length - 1 : 1)) % state.boxes.length;
      draw();
    } else if (type === "BoundingBox" && event.key === "Escape") { state.selected = -1; draw(); }
    else if (type === "BoundingBox") handled = nudge(event);
    else handled = false;
    if (handled) event.preventDefault();
  });

  loadQueue(true).catch((err) => say(err.message));
})();
