using NativeVlm.IO;

namespace NativeVlm.Models;

/// <summary>
/// One batch as transformers' Idefics3ForConditionalGeneration takes it, held on the host:
/// input_ids and attention_mask [batch, seq]; optionally pixel_values [batch, slots, channels,
/// height, width] with pixel_attention_mask [batch, slots, height, width] (all-zero slots are
/// padding), labels [batch, seq] (−100 = ignored) and target_mask [batch, seq − 1] (1 where the
/// next-token log-prob at t counts, as the fixtures define it).
/// </summary>
public sealed record Idefics3Inputs(
    int Batch,
    int SeqLen,
    int[] InputIds,
    byte[] AttentionMask,
    float[]? PixelValues,
    int[]? PixelShape,
    byte[]? PixelAttentionMask,
    int[]? Labels,
    byte[]? TargetMask)
{
    /// <summary>
    /// The case stored under <paramref name="prefix"/> ("" or e.g. "partial.") in an inputs file,
    /// with transformers' names: input_ids, attention_mask, pixel_values, pixel_attention_mask,
    /// labels, target_mask. Only input_ids is required; a missing attention_mask means all ones.
    /// </summary>
    public static Idefics3Inputs Read(SafeTensorsReader file, string prefix)
    {
        string idsName = prefix + "input_ids";
        long[] idsShape = file.GetInfo(idsName).Shape.ToArray();
        if (idsShape.Length != 2)
        {
            throw new SafeTensorsException(file.SourcePath, idsName, $"must be [batch, seq], is [{string.Join(", ", idsShape)}]");
        }
        int batch = (int)idsShape[0], seq = (int)idsShape[1];
        int[] ids = file.ReadInt32(idsName);

        byte[] attention = file.Contains(prefix + "attention_mask")
            ? ToMask(file, prefix + "attention_mask", [batch, seq])
            : Enumerable.Repeat((byte)1, batch * seq).ToArray();

        float[]? pixels = null;
        int[]? pixelShape = null;
        byte[]? pixelMask = null;
        if (file.Contains(prefix + "pixel_values"))
        {
            string name = prefix + "pixel_values";
            long[] shape = file.GetInfo(name).Shape.ToArray();
            if (shape.Length != 5 || shape[0] != batch)
            {
                throw new SafeTensorsException(file.SourcePath, name,
                    $"must be [batch={batch}, slots, channels, height, width], is [{string.Join(", ", shape)}]");
            }
            pixels = file.ReadFloat32(name);
            pixelShape = shape.Select(d => (int)d).ToArray();
            pixelMask = file.Contains(prefix + "pixel_attention_mask")
                ? ToMask(file, prefix + "pixel_attention_mask", [shape[0], shape[1], shape[3], shape[4]])
                : Enumerable.Repeat((byte)1, (int)(shape[0] * shape[1] * shape[3] * shape[4])).ToArray();
        }

        int[]? labels = null;
        if (file.Contains(prefix + "labels"))
        {
            RequireShape(file, prefix + "labels", [batch, seq]);
            labels = file.ReadInt32(prefix + "labels");
        }
        byte[]? targetMask = file.Contains(prefix + "target_mask")
            ? ToMask(file, prefix + "target_mask", [batch, seq - 1])
            : null;
        return new Idefics3Inputs(batch, seq, ids, attention, pixels, pixelShape, pixelMask, labels, targetMask);
    }

    /// <summary>Every case prefix of an inputs file: "" for plain names, "partial." for partial.input_ids, ….</summary>
    public static IReadOnlyList<string> CasePrefixes(SafeTensorsReader file) =>
        file.Names.Where(n => n.EndsWith("input_ids", StringComparison.Ordinal))
            .Select(n => n[..^"input_ids".Length])
            .Where(p => p.Length == 0 || p.EndsWith('.'))
            .Order(StringComparer.Ordinal)
            .ToList();

    private static byte[] ToMask(SafeTensorsReader file, string name, long[] shape)
    {
        RequireShape(file, name, shape);
        return file.GetInfo(name).DType is SafeTensorsDType.U8 or SafeTensorsDType.Bool
            ? file.ReadUInt8(name)
            : file.ReadInt32(name).Select((v, i) => v switch
            {
                0 => (byte)0,
                1 => (byte)1,
                _ => throw new SafeTensorsException(file.SourcePath, name, $"element {i} is {v}; a mask holds 0 or 1"),
            }).ToArray();
    }

    private static void RequireShape(SafeTensorsReader file, string name, long[] shape)
    {
        long[] actual = file.GetInfo(name).Shape.ToArray();
        if (!actual.SequenceEqual(shape))
        {
            throw new SafeTensorsException(file.SourcePath, name,
                $"has shape [{string.Join(", ", actual)}], input_ids imply [{string.Join(", ", shape)}]");
        }
    }
}
