// Decoding a picked or fetched image for the page: the browser's PNG / JPEG decoder without colour management or
// premultiplied alpha, grey by Pillow's luma (boneage.js rgbaToGrey, equal to edge_boneage.io.read_image for PNG and
// for libjpeg-turbo JPEGs), and what the quality gate's colour check needs: the file's Pillow mode read from its
// header (quality.js sourceMode) and the decoded RGBA pixels.
import { rgbaToGrey } from "./boneage.js";
import { sourceMode } from "./quality.js";

/** A Blob (file input, fetch) -> {grey: {data, width, height}, source: {format, mode, rgba, width, height}}. */
export async function decodeBlob(blob) {
  const { format, mode } = sourceMode(new Uint8Array(await blob.arrayBuffer()));
  let bmp;
  try {
    bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (e) {
    throw new Error("cannot decode the image (PNG or JPEG expected; DICOM is not supported in the app)");
  }
  const c = document.createElement("canvas");
  c.width = bmp.width; c.height = bmp.height;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bmp, 0, 0);
  const rgba = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
  bmp.close && bmp.close();
  return { grey: rgbaToGrey(rgba, c.width, c.height),
           source: { format, mode, rgba, width: c.width, height: c.height } };
}
