using System.Buffers.Binary;

namespace NativeVlm.Vision;

/// <summary>
/// Four-component JPEGs into Pillow's mode CMYK, which Skia cannot give (it converts them to RGB):
/// the samples libjpeg-turbo 2.1 decodes with Pillow's settings (JCS_CMYK output, ISLOW IDCT),
/// inverted as Pillow's "CMYK;I" rawmode does (Adobe's convention: stored 0 is full ink).
///
/// What is decoded here is what Pillow and Photoshop write: baseline or extended sequential Huffman
/// scans, 8-bit samples, every component sampled 1×1, Adobe transform 0 (CMYK) or 2 (YCCK,
/// converted to CMYK with libjpeg's integer tables). Progressive, arithmetic-coded, 12-bit and
/// subsampled CMYK JPEGs are refused by name. As in libjpeg, a marker met inside entropy-coded data
/// leaves the rest of the restart interval at zero coefficients; data that ends early is an error
/// ("image file is truncated"), as it is in Pillow.
/// </summary>
internal static class JpegCmykDecoder
{
    private const int Components = 4;

    /// <summary>Zigzag position → natural (row-major) position; entries past 63 guard corrupt run lengths, as jpeg_natural_order does.</summary>
    private static readonly int[] NaturalOrder =
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
        63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    ];

    private sealed class Component
    {
        public int Id;
        public int QuantTable;
        public int DcTable;
        public int AcTable;
        public int DcPredictor;

        /// <summary>Quantised coefficients, natural order, one 64-entry block after another, block rows of <see cref="BlocksWide"/>.</summary>
        public short[] Coefficients = [];
    }

    /// <summary>A canonical Huffman table (jdhuff's derived table): per code length, the largest code and where its values start.</summary>
    private sealed class HuffmanTable
    {
        public readonly int[] MaxCode = new int[18];
        public readonly int[] ValueOffset = new int[17];
        public byte[] Values = [];
    }

    private sealed class State(string origin)
    {
        public string Origin { get; } = origin;
        public int Width, Height, BlocksWide, BlocksHigh, RestartInterval;
        public int AdobeTransform = -1;
        public Component[]? Frame;
        public readonly ushort[][] QuantTables = new ushort[4][];
        public readonly HuffmanTable?[] DcTables = new HuffmanTable?[4], AcTables = new HuffmanTable?[4];

        public ImageInputException Error(string detail) => new(Origin, detail);
    }

    public static DecodedImage Decode(ReadOnlySpan<byte> data, string origin, long maxPixels)
    {
        var state = new State(origin);
        int offset = 2;
        bool scanned = false;
        while (true)
        {
            (byte marker, int bodyStart, int bodyLength) = NextSegment(data, ref offset, state);
            ReadOnlySpan<byte> body = data.Slice(bodyStart, bodyLength);
            switch (marker)
            {
                case 0xD9:
                    return scanned ? Output(state) : throw state.Error("JPEG ends before its image data");
                case 0xDB:
                    ReadQuantTables(body, state);
                    break;
                case 0xC4:
                    ReadHuffmanTables(body, state);
                    break;
                case 0xC0 or 0xC1:
                    ReadFrame(body, state, maxPixels);
                    break;
                case 0xC2 or 0xC3 or (>= 0xC5 and <= 0xC7) or (>= 0xC9 and <= 0xCB) or (>= 0xCD and <= 0xCF):
                    throw state.Error($"CMYK JPEG with a {FrameName(marker)} frame is not supported (baseline and extended sequential Huffman only)");
                case 0xDD:
                    state.RestartInterval = body.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(body) : throw state.Error("JPEG DRI segment is too short");
                    break;
                case 0xEE when body.Length >= 12 && body.StartsWith("Adobe"u8):
                    state.AdobeTransform = body[11];
                    break;
                case 0xDA:
                    offset = ReadScan(data, bodyStart, bodyLength, state);
                    scanned = true;
                    break;
            }
        }
    }

    private static string FrameName(byte marker) => marker switch
    {
        0xC2 => "progressive",
        0xC3 => "lossless",
        >= 0xC9 => "arithmetic-coded",
        _ => "hierarchical",
    };

    /// <summary>The marker at <paramref name="offset"/> and its segment's body; standalone markers have none.</summary>
    private static (byte Marker, int BodyStart, int BodyLength) NextSegment(ReadOnlySpan<byte> data, ref int offset, State state)
    {
        // libjpeg's next_marker: bytes before a marker and 0xFF fill bytes are skipped.
        while (offset + 1 < data.Length && (data[offset] != 0xFF || data[offset + 1] == 0xFF))
        {
            offset++;
        }
        if (offset + 2 > data.Length)
        {
            throw state.Error("image file is truncated (JPEG ends between segments)");
        }
        byte marker = data[offset + 1];
        offset += 2;
        if (marker is 0xD8 or 0x01 or (>= 0xD0 and <= 0xD7) or 0xD9)
        {
            return (marker, offset, 0);
        }
        if (offset + 2 > data.Length)
        {
            throw state.Error("image file is truncated (JPEG ends in a segment header)");
        }
        int length = BinaryPrimitives.ReadUInt16BigEndian(data[offset..]);
        if (length < 2 || offset + length > data.Length)
        {
            throw state.Error($"image file is truncated (JPEG segment 0x{marker:X2} of {length} bytes at byte {offset - 2})");
        }
        int bodyStart = offset + 2;
        offset += length;
        return (marker, bodyStart, length - 2);
    }

    private static void ReadQuantTables(ReadOnlySpan<byte> body, State state)
    {
        while (body.Length > 0)
        {
            int precision = body[0] >> 4, id = body[0] & 15, size = precision == 0 ? 64 : 128;
            if (id > 3 || precision > 1 || body.Length < 1 + size)
            {
                throw state.Error("corrupt JPEG quantisation table");
            }
            var table = new ushort[64];
            for (int k = 0; k < 64; k++)
            {
                table[NaturalOrder[k]] = precision == 0 ? body[1 + k] : BinaryPrimitives.ReadUInt16BigEndian(body[(1 + 2 * k)..]);
            }
            state.QuantTables[id] = table;
            body = body[(1 + size)..];
        }
    }

    private static void ReadHuffmanTables(ReadOnlySpan<byte> body, State state)
    {
        while (body.Length > 0)
        {
            int kind = body[0] >> 4, id = body[0] & 15;
            if (kind > 1 || id > 3 || body.Length < 17)
            {
                throw state.Error("corrupt JPEG Huffman table");
            }
            ReadOnlySpan<byte> counts = body.Slice(1, 16);
            int total = 0;
            foreach (byte count in counts)
            {
                total += count;
            }
            if (total > 256 || body.Length < 17 + total)
            {
                throw state.Error("corrupt JPEG Huffman table");
            }
            var table = new HuffmanTable { Values = body.Slice(17, total).ToArray() };
            int code = 0, index = 0;
            for (int length = 1; length <= 16; length++)
            {
                table.ValueOffset[length] = index - code;
                code += counts[length - 1];
                index += counts[length - 1];
                table.MaxCode[length] = counts[length - 1] > 0 ? code - 1 : -1;
                if (code > 1 << length)
                {
                    throw state.Error("corrupt JPEG Huffman table (codes overflow their length)");
                }
                code <<= 1;
            }
            table.MaxCode[17] = int.MaxValue;
            (kind == 0 ? state.DcTables : state.AcTables)[id] = table;
            body = body[(17 + total)..];
        }
    }

    private static void ReadFrame(ReadOnlySpan<byte> body, State state, long maxPixels)
    {
        if (body.Length < 6 || body.Length < 6 + 3 * body[5])
        {
            throw state.Error("corrupt JPEG frame header");
        }
        if (body[0] != 8)
        {
            throw state.Error($"{body[0]}-bit CMYK JPEG is not supported (8-bit only)");
        }
        state.Height = BinaryPrimitives.ReadUInt16BigEndian(body[1..]);
        state.Width = BinaryPrimitives.ReadUInt16BigEndian(body[3..]);
        ImageDecoder.CheckSize(state.Width, state.Height, maxPixels, state.Origin);
        if (body[5] != Components)
        {
            throw state.Error($"JPEG frame has {body[5]} components, not {Components}");
        }
        state.BlocksWide = (state.Width + 7) / 8;
        state.BlocksHigh = (state.Height + 7) / 8;
        state.Frame = new Component[Components];
        for (int c = 0; c < Components; c++)
        {
            ReadOnlySpan<byte> spec = body.Slice(6 + 3 * c, 3);
            if (spec[1] != 0x11)
            {
                throw state.Error("subsampled CMYK JPEG is not supported (every component must be sampled 1x1)");
            }
            if (spec[2] > 3)
            {
                throw state.Error("corrupt JPEG frame header (quantisation table id)");
            }
            state.Frame[c] = new Component
            {
                Id = spec[0],
                QuantTable = spec[2],
                Coefficients = new short[checked(state.BlocksWide * state.BlocksHigh * 64)],
            };
        }
    }

    /// <summary>Decodes one sequential scan; returns the offset of the marker after its entropy-coded data.</summary>
    private static int ReadScan(ReadOnlySpan<byte> data, int bodyStart, int bodyLength, State state)
    {
        Component[] frame = state.Frame ?? throw state.Error("JPEG scan before its frame header");
        ReadOnlySpan<byte> body = data.Slice(bodyStart, bodyLength);
        int count = body.Length > 0 ? body[0] : 0;
        if (count is < 1 or > Components || body.Length < 4 + 2 * count)
        {
            throw state.Error("corrupt JPEG scan header");
        }
        var components = new Component[count];
        for (int i = 0; i < count; i++)
        {
            int id = body[1 + 2 * i];
            Component component = frame.FirstOrDefault(c => c.Id == id) ?? throw state.Error($"JPEG scan names component {id}, which the frame does not have");
            component.DcTable = body[2 + 2 * i] >> 4;
            component.AcTable = body[2 + 2 * i] & 15;
            if (component.DcTable > 3 || component.AcTable > 3 || state.DcTables[component.DcTable] is null || state.AcTables[component.AcTable] is null
                || state.QuantTables[component.QuantTable] is null)
            {
                throw state.Error("JPEG scan uses a Huffman or quantisation table that was not defined");
            }
            components[i] = component;
        }

        var reader = new BitReader(data, bodyStart + bodyLength, state);
        // One block per component per MCU, as every component is sampled 1×1.
        int mcus = state.BlocksWide * state.BlocksHigh, sinceRestart = 0;
        foreach (Component component in components)
        {
            component.DcPredictor = 0;
        }
        for (int mcu = 0; mcu < mcus; mcu++)
        {
            if (state.RestartInterval > 0 && sinceRestart == state.RestartInterval)
            {
                reader.Restart();
                foreach (Component component in components)
                {
                    component.DcPredictor = 0;
                }
                sinceRestart = 0;
            }
            // With one component the scan is not interleaved: its blocks in raster order, which for
            // 1×1 sampling is the same order as the interleaved MCUs.
            foreach (Component component in components)
            {
                DecodeBlock(ref reader, component, component.Coefficients.AsSpan(mcu * 64, 64), state);
            }
            sinceRestart++;
        }
        return reader.End();
    }

    /// <summary>jdhuff's decode_mcu for one block; once a marker has cut the data, blocks stay zero until the next restart.</summary>
    private static void DecodeBlock(ref BitReader reader, Component component, Span<short> block, State state)
    {
        if (reader.HitMarker)
        {
            return;
        }
        int size = reader.Decode(state.DcTables[component.DcTable]!);
        if (size > 16)
        {
            throw state.Error("corrupt JPEG data (DC coefficient size over 16 bits)");
        }
        int difference = size == 0 ? 0 : Extend(reader.Bits(size), size);
        component.DcPredictor += difference;
        block[0] = (short)component.DcPredictor;
        HuffmanTable ac = state.AcTables[component.AcTable]!;
        for (int k = 1; k < 64; k++)
        {
            int symbol = reader.Decode(ac);
            int run = symbol >> 4, bits = symbol & 15;
            if (bits != 0)
            {
                k += run;
                block[NaturalOrder[k]] = (short)Extend(reader.Bits(bits), bits);
            }
            else if (run == 15)
            {
                k += 15;
            }
            else
            {
                break;
            }
        }
    }

    /// <summary>HUFF_EXTEND: a <paramref name="size"/>-bit value whose top bit is 0 stands for a negative number.</summary>
    private static int Extend(int value, int size) => value < 1 << (size - 1) ? value - (1 << size) + 1 : value;

    /// <summary>
    /// Entropy-coded bits, MSB first, with 0xFF00 stuffing removed. At a marker the bits become zeros
    /// and <see cref="HitMarker"/> is set (libjpeg's insufficient_data); at the end of the file the
    /// data is truncated.
    /// </summary>
    private ref struct BitReader(ReadOnlySpan<byte> data, int start, State state)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _offset = start;
        private int _buffer;
        private int _bitsLeft;

        public bool HitMarker { get; private set; }

        private int Bit()
        {
            if (_bitsLeft == 0)
            {
                _buffer = NextByte();
                _bitsLeft = 8;
            }
            _bitsLeft--;
            return (_buffer >> _bitsLeft) & 1;
        }

        private int NextByte()
        {
            if (HitMarker)
            {
                return 0;
            }
            if (_offset + 1 >= _data.Length)
            {
                throw state.Error("image file is truncated (JPEG image data ends early)");
            }
            byte value = _data[_offset];
            if (value != 0xFF)
            {
                _offset++;
                return value;
            }
            if (_data[_offset + 1] == 0x00)
            {
                _offset += 2;
                return 0xFF;
            }
            HitMarker = true;
            return 0;
        }

        public int Bits(int count)
        {
            int value = 0;
            for (int i = 0; i < count; i++)
            {
                value = (value << 1) | Bit();
            }
            return value;
        }

        /// <summary>jpeg_huff_decode; a code longer than 16 bits is libjpeg's "bad Huffman code", read as 0.</summary>
        public int Decode(HuffmanTable table)
        {
            int code = Bit(), length = 1;
            while (length <= 16 && code > table.MaxCode[length])
            {
                code = (code << 1) | Bit();
                length++;
            }
            if (length > 16)
            {
                return 0;
            }
            int index = table.ValueOffset[length] + code;
            return index < table.Values.Length ? table.Values[index] : 0;
        }

        /// <summary>Drops the partial byte and reads the RSTn marker that must come next.</summary>
        public void Restart()
        {
            _bitsLeft = 0;
            HitMarker = false;
            while (_offset < _data.Length && _data[_offset] != 0xFF)
            {
                _offset++;
            }
            while (_offset + 1 < _data.Length && _data[_offset + 1] == 0xFF)
            {
                _offset++;
            }
            if (_offset + 1 >= _data.Length)
            {
                throw state.Error("image file is truncated (JPEG ends before a restart marker)");
            }
            if (_data[_offset + 1] is < 0xD0 or > 0xD7)
            {
                throw state.Error($"corrupt JPEG data (restart marker expected at byte {_offset})");
            }
            _offset += 2;
        }

        /// <summary>The offset of the first marker after the scan's data (which is not a stuffed 0xFF or a restart).</summary>
        public int End()
        {
            while (true)
            {
                while (_offset < _data.Length && _data[_offset] != 0xFF)
                {
                    _offset++;
                }
                if (_offset + 1 >= _data.Length)
                {
                    throw state.Error("image file is truncated (JPEG image data ends early)");
                }
                byte next = _data[_offset + 1];
                if (next != 0x00 && next is < 0xD0 or > 0xD7)
                {
                    return _offset;
                }
                _offset += 2;
            }
        }
    }

    private static DecodedImage Output(State state)
    {
        Component[] frame = state.Frame!;
        int width = state.Width, height = state.Height;
        var planes = new byte[Components][];
        for (int c = 0; c < Components; c++)
        {
            planes[c] = InverseDct(frame[c].Coefficients, state.QuantTables[frame[c].QuantTable], state.BlocksWide, state.BlocksHigh);
        }
        // No Adobe segment means CMYK, as libjpeg assumes for four components.
        bool ycck = state.AdobeTransform switch
        {
            -1 or 0 => false,
            2 => true,
            int t => throw state.Error($"JPEG Adobe transform {t} is not defined for four components"),
        };
        var pixels = Raster.Zeros(width, height, Components);
        int stride = state.BlocksWide * 8;
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                int i = y * stride + x;
                Span<byte> cmyk = pixels.Pixels.AsSpan((y * width + x) * Components, Components);
                if (ycck)
                {
                    YcckToCmyk(planes[0][i], planes[1][i], planes[2][i], cmyk);
                }
                else
                {
                    cmyk[0] = planes[0][i];
                    cmyk[1] = planes[1][i];
                    cmyk[2] = planes[2][i];
                }
                cmyk[3] = planes[3][i];
                // Pillow's "CMYK;I": Adobe CMYK is stored inverted.
                for (int c = 0; c < Components; c++)
                {
                    cmyk[c] = (byte)(255 - cmyk[c]);
                }
            }
        }
        return new DecodedImage(state.Origin, ImageMode.CMYK, pixels);
    }

    // jdcolor.c's YCC → RGB tables: 16 fractional bits, FIX(x) = (x · 2^16 + 0.5) truncated.
    private const int ScaleBits = 16;
    private const long OneHalf = 1L << (ScaleBits - 1);
    private const long FixCrR = 91881, FixCbB = 116130, FixCrG = 46802, FixCbG = 22554;

    /// <summary>ycck_cmyk_convert: Y, Cb, Cr → R, G, B by libjpeg's tables, then 255 − each, clamped.</summary>
    private static void YcckToCmyk(int luma, int cb, int cr, Span<byte> cmyk)
    {
        int x = cr - 128, z = cb - 128;
        int crR = (int)((FixCrR * x + OneHalf) >> ScaleBits);
        int cbB = (int)((FixCbB * z + OneHalf) >> ScaleBits);
        int g = (int)((-FixCrG * x + (-FixCbG * z + OneHalf)) >> ScaleBits);
        cmyk[0] = (byte)Math.Clamp(255 - (luma + crR), 0, 255);
        cmyk[1] = (byte)Math.Clamp(255 - (luma + g), 0, 255);
        cmyk[2] = (byte)Math.Clamp(255 - (luma + cbB), 0, 255);
    }

    // jidctint.c (jpeg_idct_islow): 13-bit constants, 2 extra bits between the passes.
    private const int ConstBits = 13, Pass1Bits = 2;
    private const long Fix0298631336 = 2446, Fix0390180644 = 3196, Fix0541196100 = 4433, Fix0765366865 = 6270,
        Fix0899976223 = 7373, Fix1175875602 = 9633, Fix1501321110 = 12299, Fix1847759065 = 15137, Fix1961570560 = 16069,
        Fix2053119869 = 16819, Fix2562915447 = 20995, Fix3072711026 = 25172;

    /// <summary>One component's samples, [blocksHigh · 8, blocksWide · 8]: every block dequantised and inverse-transformed.</summary>
    private static byte[] InverseDct(short[] coefficients, ushort[] quant, int blocksWide, int blocksHigh)
    {
        int stride = blocksWide * 8;
        var plane = new byte[stride * blocksHigh * 8];
        Span<long> workspace = stackalloc long[64];
        Span<long> values = stackalloc long[8];
        Span<long> output = stackalloc long[8];
        for (int block = 0; block < blocksWide * blocksHigh; block++)
        {
            ReadOnlySpan<short> coef = coefficients.AsSpan(block * 64, 64);
            // Pass 1: columns, dequantised, results scaled by 2^Pass1Bits.
            for (int column = 0; column < 8; column++)
            {
                for (int row = 0; row < 8; row++)
                {
                    values[row] = (long)coef[row * 8 + column] * quant[row * 8 + column];
                }
                Butterfly(values, output, ConstBits - Pass1Bits);
                for (int row = 0; row < 8; row++)
                {
                    workspace[row * 8 + column] = (int)output[row];
                }
            }
            // Pass 2: rows, descaled by 8 and the pass-1 scale, through libjpeg's range-limit table.
            int top = block / blocksWide * 8 * stride + block % blocksWide * 8;
            for (int row = 0; row < 8; row++)
            {
                Butterfly(workspace.Slice(row * 8, 8), output, ConstBits + Pass1Bits + 3);
                for (int column = 0; column < 8; column++)
                {
                    plane[top + row * stride + column] = RangeLimit((int)output[column]);
                }
            }
        }
        return plane;
    }

    /// <summary>jpeg_idct_islow's 1-D transform of <paramref name="input"/> (y0..y7), each result DESCALEd by <paramref name="descale"/> bits.</summary>
    private static void Butterfly(ReadOnlySpan<long> input, Span<long> result, int descale)
    {
        // Even part; the rotator is √2·c(−6).
        long z2 = input[2], z3 = input[6];
        long z1 = (z2 + z3) * Fix0541196100;
        long tmp2 = z1 + z3 * -Fix1847759065;
        long tmp3 = z1 + z2 * Fix0765366865;
        long tmp0 = (input[0] + input[4]) << ConstBits;
        long tmp1 = (input[0] - input[4]) << ConstBits;
        long tmp10 = tmp0 + tmp3, tmp13 = tmp0 - tmp3, tmp11 = tmp1 + tmp2, tmp12 = tmp1 - tmp2;

        // Odd part.
        tmp0 = input[7];
        tmp1 = input[5];
        tmp2 = input[3];
        tmp3 = input[1];
        z1 = tmp0 + tmp3;
        z2 = tmp1 + tmp2;
        z3 = tmp0 + tmp2;
        long z4 = tmp1 + tmp3;
        long z5 = (z3 + z4) * Fix1175875602;
        tmp0 *= Fix0298631336;
        tmp1 *= Fix2053119869;
        tmp2 *= Fix3072711026;
        tmp3 *= Fix1501321110;
        z1 *= -Fix0899976223;
        z2 *= -Fix2562915447;
        z3 = z3 * -Fix1961570560 + z5;
        z4 = z4 * -Fix0390180644 + z5;
        tmp0 += z1 + z3;
        tmp1 += z2 + z4;
        tmp2 += z2 + z3;
        tmp3 += z1 + z4;

        result[0] = Descale(tmp10 + tmp3, descale);
        result[7] = Descale(tmp10 - tmp3, descale);
        result[1] = Descale(tmp11 + tmp2, descale);
        result[6] = Descale(tmp11 - tmp2, descale);
        result[2] = Descale(tmp12 + tmp1, descale);
        result[5] = Descale(tmp12 - tmp1, descale);
        result[3] = Descale(tmp13 + tmp0, descale);
        result[4] = Descale(tmp13 - tmp0, descale);
    }

    private static long Descale(long x, int bits) => (x + (1L << (bits - 1))) >> bits;

    /// <summary>
    /// libjpeg's post-IDCT range-limit table, indexed by the sample − 128 masked to 10 bits: −128..127
    /// → 0..255, 128..511 → 255, −512..−129 → 0 (and wrapping beyond, as the mask does).
    /// </summary>
    private static byte RangeLimit(int x) => (x & 1023) switch
    {
        < 128 and var i => (byte)(i + 128),
        < 512 => 255,
        < 896 => 0,
        var i => (byte)(i - 896),
    };
}
