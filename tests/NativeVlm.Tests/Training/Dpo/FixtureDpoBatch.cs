using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.IO;
using Xunit;

namespace NativeVlm.Tests.Training.Dpo;

/// <summary>
/// A fixture's dpo_batch.safetensors (TRL's PreferenceCollator output) through the production collation:
/// each pair's unpadded prompt, completions and real image frames become a <see cref="DpoSample"/>, and
/// <see cref="BatchCollator.CollateDpo"/> builds the model rows. Checks that those rows are what TRL's
/// concatenated_forward gave the model (concatenated.input_ids / attention_mask): the same masks and the
/// same ids wherever the mask is 1 (padding ids differ — TRL pads completions with 0 and rolls the prompt's
/// left padding to the end — and are never attended to nor scored). <c>prefix</c> selects one batch of a
/// file holding several (dpo-train-steps' <c>microbatch.i.</c>).
/// </summary>
internal static class FixtureDpoBatch
{
    public static DpoBatch Read(string path, string prefix = "", int padTokenId = 0)
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(path);
        int pairs = (int)file.GetInfo(prefix + "prompt_input_ids").Shape[0];
        int[][] prompts = Unpad(file, prefix + "prompt", pairs), chosen = Unpad(file, prefix + "chosen", pairs), rejected = Unpad(file, prefix + "rejected", pairs);

        SampleImages?[] images = new SampleImages?[pairs];
        if (file.Contains(prefix + "pixel_values"))
        {
            long[] shape = file.GetInfo(prefix + "pixel_values").Shape.ToArray();
            int slots = (int)shape[1], height = (int)shape[3], width = (int)shape[4], plane = height * width;
            float[] pixels = file.ReadFloat32(prefix + "pixel_values");
            byte[] mask = file.ReadUInt8(prefix + "pixel_attention_mask");
            for (int p = 0; p < pairs; p++)
            {
                // The pair's real frames come first; padding slots are all zero (mask included).
                int frames = Enumerable.Range(0, slots).Count(s => mask.AsSpan((p * slots + s) * plane, plane).IndexOfAnyExcept((byte)0) >= 0);
                images[p] = frames == 0 ? null : new SampleImages(
                    pixels.AsSpan(p * slots * 3 * plane, frames * 3 * plane).ToArray(),
                    mask.AsSpan(p * slots * plane, frames * plane).ToArray(), frames, height, width, [], []);
            }
        }
        List<DpoSample> samples = Enumerable.Range(0, pairs)
            .Select(p => new DpoSample(new RowLocation(path, p), prompts[p], chosen[p], rejected[p], images[p])).ToList();
        DpoBatch batch = new BatchCollator(padTokenId).CollateDpo(samples);

        long[] expectedShape = file.GetInfo(prefix + "concatenated.input_ids").Shape.ToArray();
        Assert.Equal(expectedShape, new long[] { batch.ModelInputs.Batch, batch.ModelInputs.SeqLen });
        long[] ids = file.ReadInt64(prefix + "concatenated.input_ids"), attention = file.ReadInt64(prefix + "concatenated.attention_mask");
        Assert.Equal(attention.Select(m => (byte)m).ToArray(), batch.ModelInputs.AttentionMask);
        for (int i = 0; i < ids.Length; i++)
        {
            if (attention[i] == 1)
            {
                Assert.Equal((int)ids[i], batch.ModelInputs.InputIds[i]);
            }
        }
        return batch;
    }

    /// <summary>Each row's tokens where its attention mask is 1 (prompts are padded on the left, completions on the right).</summary>
    private static int[][] Unpad(SafeTensorsReader file, string name, int pairs)
    {
        long[] ids = file.ReadInt64($"{name}_input_ids"), mask = file.ReadInt64($"{name}_attention_mask");
        int length = ids.Length / pairs;
        return Enumerable.Range(0, pairs)
            .Select(p => Enumerable.Range(p * length, length).Where(i => mask[i] == 1).Select(i => (int)ids[i]).ToArray())
            .ToArray();
    }
}
