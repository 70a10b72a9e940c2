"""Writes the small seed files of the fuzz corpus into fuzz/seeds/<target>/.

Run once (with Pillow installed) and commit the output; scripts/fuzz.sh adds the PDFs of
tests/fixtures and ../shared/eval, and the sample pages, when it builds the corpus.
    python3 tools/make_fuzz_seeds.py
"""
import io
import pathlib

from PIL import Image, ImageDraw

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fuzz" / "seeds"


def page(size=(96, 64), mode="RGB"):
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((4, 4), "Fuzz 12.", fill="black")
    draw.rectangle((4, 30, 60, 40), outline="black")
    return image.convert(mode)


def save(target, name, data):
    folder = ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def encoded(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def main():
    save("decode_image", "page.png", encoded(page(), "PNG"))
    save("decode_image", "grey.png", encoded(page(mode="L"), "PNG"))
    save("decode_image", "bilevel.png", encoded(page(mode="1"), "PNG"))
    save("decode_image", "palette.png", encoded(page(mode="P"), "PNG"))
    save("decode_image", "page.jpg", encoded(page(), "JPEG", quality=70))
    save("decode_image", "exif-rotated.jpg", encoded(page(), "JPEG", exif=_exif_rotated()))
    save("decode_image", "page.webp", encoded(page(), "WEBP", lossless=True))
    save("decode_image", "lossy.webp", encoded(page(), "WEBP", quality=50))
    save("decode_image", "page.bmp", encoded(page(), "BMP"))
    save("decode_image", "page.tif", encoded(page(), "TIFF"))
    for compression in ["raw", "tiff_lzw", "tiff_adobe_deflate", "packbits", "group4", "group3"]:
        image = page(mode="1") if compression.startswith("group") else page()
        save("decode_tiff", f"{compression}.tif", encoded(image, "TIFF", compression=compression))
    frames = [page(), page(mode="L"), page(mode="1")]
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    save("decode_tiff", "three-pages.tif", out.getvalue())
    save("decode_tiff", "cmyk.tif", encoded(page(mode="CMYK"), "TIFF"))
    save("decode_tiff", "16bit.tif", encoded(page(mode="I;16"), "TIFF"))
    save("decode_pdf", "image-page.pdf", encoded(page(), "PDF", resolution=72))
    save("multipart", "form.txt", (
        b"--zz\r\nContent-Disposition: form-data; name=\"formats\"\r\n\r\nhtml,txt,pdf\r\n"
        b"--zz\r\nContent-Disposition: form-data; name=\"ocr\"\r\n\r\nauto\r\n"
        b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\xe2\x80\xaeb.png\"\r\n"
        b"Content-Type: image/png\r\n\r\n" + encoded(page((8, 8)), "PNG") + b"\r\n--zz--\r\n"
    ))
    save("qwen3vl_html", "answer.bin", b"\x03\xe8\x20\x20\x04\xd8\x06\xdc" + (
        '<html><body><h1 data-bbox="10 20 500 60">Title &amp; more</h1>'
        '<p data-bbox="10 80 990 400">First line<br>second line with caf\u00e9</p>'
        '<table data-bbox="0 500 1000 900"><tr><td>1</td><td>2</td></tr></table>'
        "</body></html>"
    ).encode())
    save("render", "two-pages.bin", bytes(range(256)) * 4)
    save("config", "ocrd.toml", (ROOT.parent.parent / "config" / "ocrd.toml").read_bytes())
    save("config", "keys.toml", (
        b'data_dir = "/tmp/x"\n[server]\nbind = "0.0.0.0:1"\n[database]\nurl = "postgres://a@b/c"\n'
        b'pool_size = 0\n[limits]\nmax_pixels = 18446744073709551615\n[worker]\nmax_failed_page_ratio = 1.5\n'
    ))


def _exif_rotated():
    exif = Image.Exif()
    exif[0x0112] = 6
    return exif.tobytes()


if __name__ == "__main__":
    main()
