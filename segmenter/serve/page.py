"""The page `GET /` answers: choose or drop an image, see the overlay and the legend of the classes present.

One self-contained HTML document (no external script, style, font or image): the browser posts the image
to `/segment?output=json`, draws the photo with the returned labels coloured over it (the data set's palette,
as predict's overlays), lists the classes present with their share of the pixels, and says how long the
request took and which model answered it. Requests carry the page's cookie when the server has a token.
"""
from __future__ import annotations

import html
import json

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d232b}
header{background:#1d232b;color:#fff;padding:12px 20px}header h1{font-size:18px;margin:0}
header p{margin:2px 0 0;color:#b9c2cc;font-size:13px}
main{display:flex;gap:20px;padding:20px;flex-wrap:wrap;align-items:flex-start}
#drop{flex:1 1 640px;min-height:320px;border:2px dashed #9aa5b1;border-radius:8px;background:#fff;
display:flex;align-items:center;justify-content:center;flex-direction:column;position:relative}
#drop.over{border-color:#2b7de9;background:#eef5ff}#view{max-width:100%;display:none}
#hint{color:#56606b;text-align:center;padding:20px}aside{flex:0 1 300px}
section{background:#fff;border-radius:8px;padding:12px 14px;margin-bottom:14px}h2{font-size:14px;margin:0 0 8px}
#legend{list-style:none;margin:0;padding:0}#legend li{display:flex;align-items:center;gap:8px;margin:3px 0}
.swatch{width:16px;height:16px;border-radius:3px;border:1px solid #0003;flex:none}
.share{margin-left:auto;color:#56606b;font-variant-numeric:tabular-nums}#status.error{color:#b3261e}
dl{display:grid;grid-template-columns:auto 1fr;gap:2px 10px;margin:0;font-size:13px}dt{color:#56606b}
dd{margin:0;overflow-wrap:anywhere}label{font-size:13px;color:#56606b}
"""

_SCRIPT = """
const model = JSON.parse(document.getElementById('model').textContent);
const drop = document.getElementById('drop'), view = document.getElementById('view');
const statusLine = document.getElementById('status'), legend = document.getElementById('legend');
const alpha = document.getElementById('alpha');
let last = null;  // {photo, labels, classes}

function say(text, error) { statusLine.textContent = text; statusLine.className = error ? 'error' : ''; }

function decode(png) {  // base64 PNG -> ImageBitmap
  const bytes = Uint8Array.from(atob(png), c => c.charCodeAt(0));
  return createImageBitmap(new Blob([bytes], {type: 'image/png'}),
                           {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
}

function draw() {  // the photo with each labelled pixel's class colour over it, as predict's overlays
  if (!last) return;
  const {photo, labels} = last, w = labels.width, h = labels.height;
  view.width = w; view.height = h;
  const ctx = view.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(labels, 0, 0);
  const ids = ctx.getImageData(0, 0, w, h).data;
  ctx.drawImage(photo, 0, 0, w, h);
  const out = ctx.getImageData(0, 0, w, h), px = out.data, a = Number(alpha.value) / 100;
  for (let i = 0; i < px.length; i += 4) {
    const colour = model.palette[ids[i]];
    if (!colour) continue;  // an ignored label: the photo shows through
    for (let c = 0; c < 3; c++) px[i + c] = Math.round((1 - a) * px[i + c] + a * colour[c]);
  }
  ctx.putImageData(out, 0, 0);
  view.style.display = 'block';
  document.getElementById('hint').style.display = 'none';
}

function showLegend(classes, total) {
  legend.replaceChildren(...classes.map(c => {
    const li = document.createElement('li'), sw = document.createElement('span');
    const name = document.createElement('span'), share = document.createElement('span');
    sw.className = 'swatch'; sw.style.background = `rgb(${c.color.join(',')})`;
    name.textContent = c.name; share.className = 'share';
    share.textContent = (100 * c.pixels / total).toFixed(1) + ' %';
    li.dataset.cls = c.name; li.append(sw, name, share); return li;
  }));
}

async function segment(file) {
  if (!file) return;
  say(`segmenting ${file.name} …`);
  const started = performance.now();
  try {
    const answer = await fetch('segment?output=json', {method: 'POST', body: file,
      headers: {'Content-Type': file.type || 'application/octet-stream'}, credentials: 'same-origin'});
    const body = await answer.json();
    if (!answer.ok) { say(`${file.name}: ${body.error || answer.statusText}`, true); return; }
    const [labels, photo] = await Promise.all([decode(body.labels_png), createImageBitmap(file)]);
    last = {photo, labels, classes: body.classes};
    draw();
    showLegend(body.classes, body.width * body.height);
    const seconds = (performance.now() - started) / 1000;
    say(`${file.name}: ${body.width}×${body.height}, ${body.classes.length} classes, ` +
        `${seconds.toFixed(2)} s for the request (${body.seconds.toFixed(2)} s in the server)`);
  } catch (err) {
    say(`${file.name}: ${err}`, true);
  }
}

document.getElementById('file').addEventListener('change', e => segment(e.target.files[0]));
alpha.addEventListener('input', draw);
const over = on => e => { e.preventDefault(); drop.classList.toggle('over', on); };
['dragenter', 'dragover'].forEach(t => drop.addEventListener(t, over(true)));
['dragleave', 'drop'].forEach(t => drop.addEventListener(t, over(false)));
drop.addEventListener('drop', e => segment(e.dataTransfer.files[0]));
"""


def _facts(description: dict) -> list[tuple[str, str]]:
    """The rows of the page's "Served model" panel."""
    model, engine, window = description.get("model", {}), description.get("engine", {}), description.get("window", {})
    rows = [("model", model.get("file", "")), ("architecture", model.get("architecture", "")),
            ("sha256", str(model.get("sha256", ""))[:16]), ("format", model.get("format", "")),
            ("data set", description.get("dataset", "")),
            ("window", f"{window.get('size', '')}, stride {window.get('stride', '')}"),
            ("engine", f"{engine.get('device', '')} {engine.get('precision', '')}"),
            ("replicas", str(description.get("replicas", ""))), ("version", description.get("version", ""))]
    return [(k, str(v)) for k, v in rows if v]


def page_html(description: dict, alpha: float = 0.55) -> str:
    """The page, with the served model's description (GET /model) embedded for its panel and palette; `alpha` is
    the overlay's opacity to start from."""
    data = json.dumps({"palette": description.get("palette", []), "classes": description.get("classes", [])})
    data = data.replace("</", "<\\/")  # nothing in it can end the script element
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in _facts(description))
    title = html.escape(description.get("model", {}).get("architecture", "Segmenter").split(",")[0])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Segment an image · {title}</title><style>{_STYLE}</style></head>
<body><header><h1>Segment an image</h1><p>{title} · {html.escape(description.get('dataset', ''))} classes</p></header>
<main><div id="drop"><p id="hint">Drop an image here, or choose one.</p><canvas id="view"></canvas></div>
<aside><section><h2>Image</h2><input type="file" id="file" accept="image/*"><p id="status">No image yet.</p>
<label>opacity <input type="range" id="alpha" min="0" max="100" value="{round(100 * alpha)}">
</label></section><section><h2>Classes present</h2><ul id="legend"></ul></section>
<section><h2>Served model</h2><dl>{facts}</dl></section></aside></main>
<script type="application/json" id="model">{data}</script>
<script>{_SCRIPT}</script></body></html>
"""
