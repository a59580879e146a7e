using NativeVlm.Autograd;

namespace NativeVlm.Training;

/// <summary>
/// xoshiro256** (Blackman and Vigna), seeded through SplitMix64: a generator whose whole state is four
/// 64-bit words, so a checkpoint can store it and a resumed run draws exactly what the uninterrupted
/// run would have (System.Random's state cannot be read). Derives from <see cref="Random"/> so code
/// written against Random (LoRA dropout) can draw from it; a gradient checkpoint restores its state to
/// redraw a segment's dropout masks.
/// </summary>
public sealed class Xoshiro256 : Random, IRandomState
{
    private ulong _s0, _s1, _s2, _s3;

    public Xoshiro256(ulong seed)
    {
        ulong x = seed;
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    /// <summary>The four state words, for a training checkpoint or a gradient checkpoint's recompute.</summary>
    public ulong[] State
    {
        get => [_s0, _s1, _s2, _s3];
        set
        {
            if (value.Length != 4 || value.All(w => w == 0))
            {
                throw new ArgumentException("a xoshiro256 state is four 64-bit words, not all zero");
            }
            (_s0, _s1, _s2, _s3) = (value[0], value[1], value[2], value[3]);
        }
    }

    public ulong NextUInt64()
    {
        ulong result = RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) from the top 53 bits.</summary>
    public override double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    protected override double Sample() => NextDouble();

    public override int Next() => (int)(NextUInt64() >> 33);

    public override int Next(int maxValue) => Next(0, maxValue);

    /// <summary>Uniform in [min, max) by rejection (no modulo bias).</summary>
    public override int Next(int minValue, int maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minValue, maxValue);
        ulong range = (ulong)((long)maxValue - minValue);
        if (range == 0)
        {
            return minValue;
        }
        ulong limit = ulong.MaxValue - ulong.MaxValue % range;
        ulong draw;
        do
        {
            draw = NextUInt64();
        }
        while (draw >= limit);
        return (int)(minValue + (long)(draw % range));
    }

    public override void NextBytes(Span<byte> buffer)
    {
        for (int i = 0; i < buffer.Length; i++)
        {
            buffer[i] = (byte)(NextUInt64() >> 56);
        }
    }

    public override void NextBytes(byte[] buffer) => NextBytes(buffer.AsSpan());

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));

    private static ulong SplitMix64(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
