namespace NativeVlm.Training.Metrics;

/// <summary>
/// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final xor 0xFFFFFFFF), the
/// checksum of TFRecord framing, and TensorFlow's masking of it. Table-driven: a TensorBoard record is a
/// few dozen bytes, so speed does not matter and no package is needed for it.
/// </summary>
internal static class Crc32C
{
    private const uint ReflectedPolynomial = 0x82F63B78;

    /// <summary>Added after the rotation by <see cref="Masked"/> (tensorflow/core/lib/hash/crc32c.h, kMaskDelta).</summary>
    private const uint MaskDelta = 0xA282EAD8;

    private static readonly uint[] Table = BuildTable();

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }
        return crc ^ 0xFFFFFFFF;
    }

    /// <summary>
    /// The CRC as TFRecord stores it: rotated right by 15 bits plus a constant, because a CRC computed
    /// over bytes that themselves contain CRCs is weak (TensorFlow's and LevelDB's reason).
    /// </summary>
    public static uint Masked(ReadOnlySpan<byte> data)
    {
        uint crc = Compute(data);
        return ((crc >> 15) | (crc << 17)) + MaskDelta;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint crc = i;
            for (int bit = 0; bit < 8; bit++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ ReflectedPolynomial : crc >> 1;
            }
            table[i] = crc;
        }
        return table;
    }
}
