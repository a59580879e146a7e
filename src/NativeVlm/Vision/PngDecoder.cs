using System.Buffers.Binary;
using System.IO.Compression;

namespace NativeVlm.Vision;

/// <summary>
/// PNG into the mode and samples Pillow 9.4's PngImagePlugin gives (its _MODES table): grey 1-bit
/// → "1" (0/1); 2- and 4-bit grey → L scaled to 0..255; 8-bit grey → L; palette (1 to 8 bits) → P
/// with the PLTE palette and raw indices; RGB and RGBA (8 bits, or 16 bits → the high byte); grey +
/// alpha → LA (16 bits → RGBA). tRNS is not applied: Pillow keeps it aside in <c>info</c>, and
/// transformers' arrays do not see it. 16-bit grey (Pillow's mode I) is rejected: transformers keeps
/// only the low byte of it.
///
/// PNG is lossless, so decoding it here is exact by construction and gives what Skia cannot: palette
/// indices and Pillow's bit-depth rules. Every chunk's CRC is checked; the inflated data is read up
/// to the size the header implies and no further, so a zlib bomb inflates no more than the pixel
/// limit allows.
/// </summary>
internal static class PngDecoder
{
    public static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private enum ColourType : byte
    {
        Grey = 0,
        Rgb = 2,
        Palette = 3,
        GreyAlpha = 4,
        Rgba = 6,
    }

    private sealed record Header(int Width, int Height, int BitDepth, ColourType Colour, bool Interlaced)
    {
        public int Samples => Colour switch
        {
            ColourType.Grey or ColourType.Palette => 1,
            ColourType.GreyAlpha => 2,
            ColourType.Rgb => 3,
            _ => 4,
        };

        public int BitsPerPixel => Samples * BitDepth;

        /// <summary>Bytes of one filtered row of <paramref name="width"/> pixels, without its filter byte.</summary>
        public long RowBytes(int width) => ((long)width * BitsPerPixel + 7) / 8;
    }

    public static DecodedImage Decode(ReadOnlySpan<byte> data, string origin, long maxPixels)
    {
        if (!data.StartsWith(Signature))
        {
            throw new ImageInputException(origin, "not a PNG file (bad signature)");
        }
        Header? header = null;
        byte[]? palette = null;
        var compressed = new MemoryStream();
        int offset = Signature.Length;
        bool ended = false;
        while (offset < data.Length && !ended)
        {
            if (data.Length - offset < 12)
            {
                throw new ImageInputException(origin, $"PNG truncated inside a chunk header at byte {offset}");
            }
            uint length = BinaryPrimitives.ReadUInt32BigEndian(data[offset..]);
            if (length > int.MaxValue || length > data.Length - offset - 12)
            {
                throw new ImageInputException(origin, $"PNG truncated: a chunk at byte {offset} declares {length} bytes, the file has {data.Length - offset - 12} left");
            }
            ReadOnlySpan<byte> typeAndData = data.Slice(offset + 4, 4 + (int)length);
            string type = System.Text.Encoding.ASCII.GetString(typeAndData[..4]);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(data[(offset + 8 + (int)length)..]);
            if (Crc32(typeAndData) != crc)
            {
                throw new ImageInputException(origin, $"broken PNG file (bad checksum in chunk {type} at byte {offset})");
            }
            ReadOnlySpan<byte> body = typeAndData[4..];
            offset += 12 + (int)length;
            switch (type)
            {
                case "IHDR":
                    header = ParseHeader(body, origin, maxPixels);
                    break;
                case "PLTE":
                    if (body.Length is 0 or > 768 || body.Length % 3 != 0)
                    {
                        throw new ImageInputException(origin, $"PNG PLTE of {body.Length} bytes is not 1 to 256 RGB triples");
                    }
                    palette = body.ToArray();
                    break;
                case "IDAT":
                    compressed.Write(body);
                    break;
                case "IEND":
                    ended = true;
                    break;
            }
            if (header is null)
            {
                throw new ImageInputException(origin, "PNG does not start with IHDR");
            }
        }
        if (header is null || compressed.Length == 0)
        {
            throw new ImageInputException(origin, "PNG has no image data (IDAT)");
        }
        if (header.Colour == ColourType.Palette && palette is null)
        {
            throw new ImageInputException(origin, "palette PNG without a PLTE chunk");
        }
        compressed.Position = 0;
        byte[] samples = Inflate(compressed, header, origin);
        return ToPillowMode(header, samples, palette, origin);
    }

    private static Header ParseHeader(ReadOnlySpan<byte> body, string origin, long maxPixels)
    {
        if (body.Length != 13)
        {
            throw new ImageInputException(origin, $"PNG IHDR is {body.Length} bytes, not 13");
        }
        uint width = BinaryPrimitives.ReadUInt32BigEndian(body), height = BinaryPrimitives.ReadUInt32BigEndian(body[4..]);
        int bitDepth = body[8];
        var colour = (ColourType)body[9];
        if (body[10] != 0 || body[11] != 0 || body[12] > 1)
        {
            throw new ImageInputException(origin, $"PNG IHDR has unknown compression {body[10]}, filter {body[11]} or interlace {body[12]} method");
        }
        bool known = colour switch
        {
            ColourType.Grey => bitDepth is 1 or 2 or 4 or 8 or 16,
            ColourType.Palette => bitDepth is 1 or 2 or 4 or 8,
            ColourType.Rgb or ColourType.GreyAlpha or ColourType.Rgba => bitDepth is 8 or 16,
            _ => false,
        };
        if (!known)
        {
            throw new ImageInputException(origin, $"unknown PNG mode: bit depth {bitDepth}, colour type {(int)colour}");
        }
        if (colour == ColourType.Grey && bitDepth == 16)
        {
            throw new ImageInputException(origin,
                "16-bit greyscale PNG (Pillow's mode I) is not supported: transformers' processor keeps only the low byte of each sample");
        }
        ImageDecoder.CheckSize(width, height, maxPixels, origin);
        return new Header((int)width, (int)height, bitDepth, colour, body[12] == 1);
    }

    /// <summary>The unfiltered samples, rows packed as in the file ([height][RowBytes(width)]), interlacing undone.</summary>
    private static byte[] Inflate(Stream compressed, Header header, string origin)
    {
        long rowBytes = header.RowBytes(header.Width);
        var image = new byte[checked(rowBytes * header.Height)];
        using var zlib = new ZLibStream(compressed, CompressionMode.Decompress);
        try
        {
            if (!header.Interlaced)
            {
                ReadPass(zlib, header, header.Width, header.Height, (x, y) => (x, y), image, origin);
            }
            else
            {
                foreach ((int x0, int y0, int dx, int dy) in Adam7)
                {
                    int width = (header.Width - x0 + dx - 1) / dx, height = (header.Height - y0 + dy - 1) / dy;
                    if (width > 0 && height > 0)
                    {
                        ReadPass(zlib, header, width, height, (x, y) => (x0 + x * dx, y0 + y * dy), image, origin);
                    }
                }
            }
        }
        catch (InvalidDataException e)
        {
            throw new ImageInputException(origin, $"PNG image data is corrupt ({e.Message})");
        }
        return image;
    }

    /// <summary>Adam7's passes: first column and row, column and row step.</summary>
    private static readonly (int X0, int Y0, int Dx, int Dy)[] Adam7 =
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];

    /// <summary>One pass's filtered rows, unfiltered and placed at their image positions.</summary>
    private static void ReadPass(Stream zlib, Header header, int width, int height, Func<int, int, (int X, int Y)> place, byte[] image, string origin)
    {
        int rowBytes = (int)header.RowBytes(width);
        int bytesPerPixel = Math.Max(1, header.BitsPerPixel / 8);
        var previous = new byte[rowBytes];
        var row = new byte[rowBytes + 1];
        for (int y = 0; y < height; y++)
        {
            if (zlib.ReadAtLeast(row, row.Length, throwOnEndOfStream: false) < row.Length)
            {
                throw new ImageInputException(origin, "image file is truncated (PNG image data ends early)");
            }
            Span<byte> current = row.AsSpan(1);
            Unfilter(row[0], current, previous, bytesPerPixel, origin);
            Place(header, current, width, y, place, image);
            current.CopyTo(previous);
        }
    }

    private static void Unfilter(byte filter, Span<byte> row, ReadOnlySpan<byte> above, int bpp, string origin)
    {
        switch (filter)
        {
            case 0:
                break;
            case 1:
                for (int i = bpp; i < row.Length; i++)
                {
                    row[i] += row[i - bpp];
                }
                break;
            case 2:
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] += above[i];
                }
                break;
            case 3:
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] += (byte)(((i >= bpp ? row[i - bpp] : 0) + above[i]) >> 1);
                }
                break;
            case 4:
                for (int i = 0; i < row.Length; i++)
                {
                    row[i] += Paeth(i >= bpp ? row[i - bpp] : (byte)0, above[i], i >= bpp ? above[i - bpp] : (byte)0);
                }
                break;
            default:
                throw new ImageInputException(origin, $"PNG row filter {filter} is not one of 0 to 4");
        }
    }

    private static byte Paeth(byte left, byte up, byte upLeft)
    {
        int p = left + up - upLeft;
        int pa = Math.Abs(p - left), pb = Math.Abs(p - up), pc = Math.Abs(p - upLeft);
        return pa <= pb && pa <= pc ? left : pb <= pc ? up : upLeft;
    }

    /// <summary>Copies one unfiltered row of a pass, pixel by pixel (bit-packed pixels included), to its place in the image.</summary>
    private static void Place(Header header, ReadOnlySpan<byte> row, int width, int y, Func<int, int, (int X, int Y)> place, byte[] image)
    {
        long imageRowBytes = header.RowBytes(header.Width);
        if (!header.Interlaced)
        {
            row.CopyTo(image.AsSpan((int)(y * imageRowBytes)));
            return;
        }
        int bits = header.BitsPerPixel;
        for (int x = 0; x < width; x++)
        {
            (int ix, int iy) = place(x, y);
            if (bits >= 8)
            {
                int bytes = bits / 8;
                row.Slice(x * bytes, bytes).CopyTo(image.AsSpan((int)(iy * imageRowBytes) + ix * bytes));
            }
            else
            {
                int value = (row[x * bits / 8] >> (8 - bits - x * bits % 8)) & ((1 << bits) - 1);
                int target = (int)(iy * imageRowBytes) + ix * bits / 8;
                image[target] |= (byte)(value << (8 - bits - ix * bits % 8));
            }
        }
    }

    /// <summary>Pillow's rawmode unpacking of the packed rows into the mode's 8-bit channels.</summary>
    private static DecodedImage ToPillowMode(Header header, byte[] samples, byte[]? palette, string origin)
    {
        int width = header.Width, height = header.Height, depth = header.BitDepth;
        long rowBytes = header.RowBytes(width);
        (ImageMode mode, byte[]? modePalette) = header.Colour switch
        {
            ColourType.Grey => (depth == 1 ? ImageMode.Bilevel : ImageMode.L, (byte[]?)null),
            ColourType.Palette => (ImageMode.P, palette),
            ColourType.Rgb => (ImageMode.RGB, null),
            ColourType.GreyAlpha => (depth == 8 ? ImageMode.LA : ImageMode.RGBA, null),
            _ => (ImageMode.RGBA, null),
        };
        var pixels = Raster.Zeros(width, height, mode.Channels());
        byte[] dst = pixels.Pixels;
        for (int y = 0; y < height; y++)
        {
            ReadOnlySpan<byte> row = samples.AsSpan((int)(y * rowBytes), (int)rowBytes);
            Span<byte> outRow = dst.AsSpan(y * pixels.RowBytes, pixels.RowBytes);
            if (depth < 8)
            {
                // "1" keeps 0/1; L;2 and L;4 scale to 0..255 (× 85, × 17); P;n keeps the indices.
                int scale = header.Colour == ColourType.Palette || depth == 1 ? 1 : 255 / ((1 << depth) - 1);
                for (int x = 0; x < width; x++)
                {
                    int value = (row[x * depth / 8] >> (8 - depth - x * depth % 8)) & ((1 << depth) - 1);
                    outRow[x] = (byte)(value * scale);
                }
            }
            else if (depth == 8)
            {
                row.CopyTo(outRow);
            }
            else if (header.Colour == ColourType.GreyAlpha)
            {
                // LA;16B → RGBA: the grey's high byte in R, G and B, the alpha's high byte in A.
                for (int x = 0; x < width; x++)
                {
                    outRow[4 * x] = outRow[4 * x + 1] = outRow[4 * x + 2] = row[4 * x];
                    outRow[4 * x + 3] = row[4 * x + 2];
                }
            }
            else
            {
                // RGB;16B and RGBA;16B: the high (first) byte of every big-endian sample.
                for (int i = 0; i < outRow.Length; i++)
                {
                    outRow[i] = row[2 * i];
                }
            }
        }
        return new DecodedImage(origin, mode, pixels, modePalette);
    }

    private static readonly uint[] CrcTable = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++)
        {
            c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        return c;
    }).ToArray();

    internal static uint Crc32(ReadOnlySpan<byte> bytes)
    {
        uint c = 0xFFFFFFFFu;
        foreach (byte b in bytes)
        {
            c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        }
        return c ^ 0xFFFFFFFFu;
    }
}
