"""Writes the browser test page into DIR and serves DIR over HTTP/1.1 on 127.0.0.1:PORT.

The page loads 50 PNG images of various sizes and one 20 MB file; its script fetches each of them again,
checks its SHA-256 against the one written here, reads `nextHopProtocol` of every entry in the Resource
Timing buffer, and writes the verdict into the element `#result` for `chromium --dump-dom` to print.
"""
import hashlib, http.server, json, os, random, struct, sys, zlib

def png(width, height, rng):
    raw = b"".join(b"\x00" + bytes(rng.getrandbits(8) for _ in range(width * 3)) for _ in range(height))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")

def write(directory):
    rng = random.Random(7)
    os.makedirs(os.path.join(directory, "img"), exist_ok=True)
    files = {}
    for i in range(50):
        side = 8 + (i * 37) % 300
        data = png(side, side * (1 + i % 3), rng)
        name = f"img/{i}.png"
        files[name] = (data, side, side * (1 + i % 3))
    big = rng.randbytes(20 * 1024 * 1024)
    files["big.bin"] = (big, None, None)
    expected = {}
    for name, (data, w, h) in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
        expected[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "width": w, "height": h}
    imgs = "\n".join(f'<img id="i{i}" src="img/{i}.png">' for i in range(50))
    page = PAGE.replace("IMAGES", imgs).replace("EXPECTED", json.dumps(expected))
    with open(os.path.join(directory, "index.html"), "w") as f:
        f.write(page)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>qproxy browser check</title></head>
<body>
IMAGES
<pre id="result">pending</pre>
<script>
const expected = EXPECTED;
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
window.addEventListener("load", async () => {
  const problems = [];
  try {
    await Promise.all(Object.entries(expected).map(async ([name, want]) => {
      const response = await fetch(name + "?verify", { cache: "no-store" });
      const body = await response.arrayBuffer();
      if (response.status !== 200) problems.push(name + ": status " + response.status);
      if (body.byteLength !== want.size) problems.push(name + ": " + body.byteLength + " bytes, want " + want.size);
      const got = hex(await crypto.subtle.digest("SHA-256", body));
      if (got !== want.sha256) problems.push(name + ": sha256 " + got);
    }));
    for (let i = 0; i < 50; i++) {
      const img = document.getElementById("i" + i), want = expected["img/" + i + ".png"];
      if (!img.complete || img.naturalWidth !== want.width || img.naturalHeight !== want.height)
        problems.push("img/" + i + ".png: decoded " + img.naturalWidth + "x" + img.naturalHeight);
    }
    const entries = [performance.getEntriesByType("navigation")[0], ...performance.getEntriesByType("resource")];
    const protocols = {};
    for (const e of entries) protocols[e.nextHopProtocol] = (protocols[e.nextHopProtocol] || 0) + 1;
    document.getElementById("result").textContent = "RESULT " + JSON.stringify({ problems, protocols, entries: entries.length });
  } catch (e) {
    document.getElementById("result").textContent = "RESULT " + JSON.stringify({ problems: ["script: " + e], protocols: {}, entries: 0 });
  }
});
</script>
</body></html>
"""

class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass

if __name__ == "__main__":
    directory, port = sys.argv[1], int(sys.argv[2])
    write(directory)
    os.chdir(directory)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
