// The page's side of weft's browser test: named MQTT.js and nats.ws
// clients, driven by run.mjs through window.weft.run(op), reporting every
// message they receive (and any unexpected close) through
// window.weftReport, which run.mjs exposes. Payloads cross as UTF-8 text
// one way and as hex the other, so that the test compares exact bytes.
import { connect as natsConnect } from "/nats.js";

const clients = new Map(); // name -> { kind, client, closing }
const encoder = new TextEncoder();
const decoder = new TextDecoder(); // lossy: for display; hex is exact

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unhex(text) {
  if (text.length % 2) throw new Error("odd payload_hex");
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

function row(table, cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = cell;
    tr.appendChild(td);
  }
  document.getElementById(table).appendChild(tr);
  return tr;
}

// What the log shows of a payload (a large one would fill the page).
function shown(text) {
  return text.length > 60 ? `${text.slice(0, 60)}… (${text.length} chars)` : text;
}

function report(event) {
  row("log", [event.client, event.event, event.topic ?? "", shown(event.payload ?? event.reason ?? "")]);
  window.weftReport(event);
}

function received(name, topic, bytes, extra) {
  report({ event: "message", client: name, topic, payload: decoder.decode(bytes), payload_hex: hex(bytes), ...extra });
}

function unexpectedClose(name, reason) {
  const entry = clients.get(name);
  if (entry && !entry.closing) {
    entry.closing = true;
    entry.state.textContent = "closed: " + reason;
    report({ event: "client_closed", client: name, reason });
  }
}

function get(name) {
  const entry = clients.get(name);
  if (!entry) throw new Error(`no client named ${name}`);
  return entry;
}

async function connectMqtt(name, op) {
  const client = window.mqtt.connect(op.url, {
    clientId: op.client_id ?? `weft-browser-${name}`,
    protocolVersion: op.protocol_version ?? 4,
    clean: true,
    reconnectPeriod: 0, // a drop is a failure, not something to hide
    connectTimeout: op.timeout_ms ?? 10000,
  });
  await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", (e) => reject(new Error(`mqtt connect ${op.url}: ${e.message}`)));
    client.once("close", () => reject(new Error(`mqtt connect ${op.url}: closed before CONNACK`)));
  });
  client.on("message", (topic, payload, packet) =>
    received(name, topic, payload, { qos: packet.qos, retain: packet.retain }),
  );
  client.on("close", () => unexpectedClose(name, "connection closed"));
  client.on("error", (e) => unexpectedClose(name, `error: ${e.message}`));
  return client;
}

async function connectNats(name, op) {
  let client;
  try {
    client = await natsConnect({
      servers: op.url,
      name: op.client_id ?? `weft-browser-${name}`,
      reconnect: false,
      timeout: op.timeout_ms ?? 10000,
    });
  } catch (e) {
    // A NatsError's message is often only its code.
    throw new Error(`nats connect ${op.url}: ${e.code ?? e.name}${e.message ? `: ${e.message}` : ""}`);
  }
  client.closed().then((err) => unexpectedClose(name, err ? `error: ${err.message}` : "connection closed"));
  return client;
}

async function run(op) {
  switch (op.op) {
    case "connect": {
      if (clients.has(op.client)) throw new Error(`client ${op.client} exists`);
      const client = op.kind === "mqtt" ? await connectMqtt(op.client, op)
        : op.kind === "nats" ? await connectNats(op.client, op)
        : null;
      if (!client) throw new Error(`unknown kind ${op.kind}`);
      const tr = row("connections", [op.client, op.kind, op.url, "connected"]);
      clients.set(op.client, { kind: op.kind, client, closing: false, state: tr.lastChild });
      return { connected: op.client };
    }
    case "subscribe": {
      const { kind, client } = get(op.client);
      row("log", [op.client, "subscribe", op.topic, ""]);
      if (kind === "mqtt") {
        const granted = await client.subscribeAsync(op.topic, { qos: op.qos ?? 0 });
        const codes = granted.map((g) => g.qos);
        if (codes.some((q) => q >= 0x80)) throw new Error(`subscribe ${op.topic} refused: ${codes}`);
        return { granted: codes };
      }
      client.subscribe(op.topic, {
        callback: (err, msg) => {
          if (err) report({ event: "error", client: op.client, reason: err.message });
          else received(op.client, msg.subject, msg.data, {});
        },
      });
      await client.flush(); // the server has the SUB once its PONG is back
      return {};
    }
    case "publish": {
      const { kind, client } = get(op.client);
      // The payload as text (sent as UTF-8) or as exact bytes in hex.
      const bytes = op.payload_hex !== undefined ? unhex(op.payload_hex) : encoder.encode(op.payload);
      row("log", [op.client, "publish", op.topic, op.payload !== undefined ? shown(op.payload) : `${bytes.length} bytes`]);
      if (kind === "mqtt") {
        // A Uint8Array is written as it is (mqtt-packet takes any byte
        // view); QoS 1 resolves on PUBACK, QoS 0 once written.
        await client.publishAsync(op.topic, bytes, { qos: op.qos ?? 0, retain: !!op.retain });
      } else {
        client.publish(op.topic, bytes);
        await client.flush();
      }
      return { bytes: bytes.length };
    }
    case "disconnect": {
      const entry = get(op.client);
      entry.closing = true;
      if (entry.kind === "mqtt") await entry.client.endAsync();
      else await entry.client.close();
      entry.state.textContent = "disconnected";
      return {};
    }
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

window.weft = { run };
document.title = "weft browser test (ready)";
