// A picture of the demo task for people: three panels side by side —
//   1. the full scene (shrunk for display) with the target tile outlined,
//   2. the model's view: the scene smart-resized to the model's budget by the processor's
//      Pillow-exact bicubic resize, shown with nearest-neighbour enlargement (exact pixels),
//   3. what the crop tool returns for the tile's box: the crop, resized to the frame it is packed
//      in, shown the same way.
// The character must be unreadable in panel 2 and readable in panel 3; the docs image
// packages/trainers/docs/demo-task.png is made by this.
import sharp from 'sharp';
import { type RgbImage, resizeBicubic } from '@fovea/models';
import { demoCropTool, groundingAnswer, modelFrameBox } from './demoDataset.js';
import { textPath } from './glyphs.js';
import type { Scene, SceneOptions } from './scenes.js';

export interface PreviewOptions {
  /** Side of each square panel in pixels; default 512. */
  panel?: number;
  scene?: SceneOptions;
  cropMinPixels?: number;
  cropMaxPixels?: number;
}

function raw(img: RgbImage) {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } });
}

/** Nearest-neighbour enlargement into a panel × panel square (letterboxed on gray). */
async function panelOf(img: RgbImage, panel: number, kernel: 'nearest' | 'lanczos3'): Promise<Buffer> {
  return raw(img).resize(panel, panel, { kernel, fit: 'contain', background: '#808080' }).png().toBuffer();
}

/** The three-panel PNG for a scene (see the file comment). */
export async function renderTaskPreview(scene: Scene, opts: PreviewOptions = {}): Promise<Buffer> {
  const panel = opts.panel ?? 512;
  if (!Number.isInteger(panel) || panel < 128 || panel > 2048) throw new Error(`renderTaskPreview: panel must be an integer in [128, 2048], got ${opts.panel}`);
  const [h, w] = scene.modelFrame;
  const view = resizeBicubic(scene.image, h, w);
  const box = modelFrameBox(scene.target.box, [scene.height, scene.width], scene.modelFrame);
  const crop = demoCropTool(opts).crop(groundingAnswer(box), { original: scene.image, modelFrame: scene.modelFrame });
  if (!crop.ok) throw new Error(`renderTaskPreview: the crop tool rejected the tile's box: ${crop.message}`);
  const cropView = resizeBicubic(crop.image, crop.imageFrame[0], crop.imageFrame[1]);

  // Panel 1 with an outline around the tile, drawn at display scale.
  const s = panel / Math.max(scene.width, scene.height);
  const [x1, y1, x2, y2] = scene.target.box.map((v) => v * s);
  const pad = 10;
  const outline = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${panel}" height="${panel}">` +
    `<rect x="${x1 - pad}" y="${y1 - pad}" width="${x2 - x1 + 2 * pad}" height="${y2 - y1 + 2 * pad}" fill="none" stroke="#e00000" stroke-width="3"/></svg>`);
  const full = await sharp(await panelOf(scene.image, panel, 'lanczos3')).composite([{ input: outline }]).png().toBuffer();

  const labelH = 40, gap = 8, cell = 3;
  const labels = [
    `SCENE ${scene.width}X${scene.height}`,
    `MODEL VIEW ${w}X${h}`,
    `CROP ${crop.cropSize![1]}X${crop.cropSize![0]} TO ${crop.imageFrame[1]}X${crop.imageFrame[0]}`,
  ];
  const W = 3 * panel + 4 * gap, H = panel + labelH + 2 * gap;
  const text = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${labelH}">` +
    labels.map((l, i) => `<path d="${textPath(l, gap + i * (panel + gap), 10, cell)}" fill="#000000" shape-rendering="crispEdges"/>`).join('') + '</svg>');
  return sharp({ create: { width: W, height: H, channels: 3, background: '#ffffff' } })
    .composite([
      { input: text, left: 0, top: 0 },
      { input: full, left: gap, top: labelH + gap },
      { input: await panelOf(view, panel, 'nearest'), left: 2 * gap + panel, top: labelH + gap },
      { input: await panelOf(cropView, panel, 'nearest'), left: 3 * gap + 2 * panel, top: labelH + gap },
    ])
    .png({ compressionLevel: 9 }).toBuffer();
}
