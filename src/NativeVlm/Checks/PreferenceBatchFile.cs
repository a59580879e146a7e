using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.IO;

namespace NativeVlm.Checks;

/// <summary>
/// A DPO batch saved from TRL (the output of PreferenceCollator.torch_call, as the adapter fixtures'
/// dpo_batch.safetensors hold it): prompt_/chosen_/rejected_ input_ids and attention_mask (prompts
/// left-padded, completions right-padded), pixel_values [pairs, slots, 3, h, w] and pixel_attention_mask
/// [pairs, slots, h, w] with all-zero padding slots. Each pair's unpadded prompt, completions and real
/// frames become a <see cref="DpoSample"/>, and the production collation (<see cref="BatchCollator.CollateDpo"/>)
/// builds the model rows. When the file also holds what TRL's concatenated_forward gave the model
/// (concatenated.input_ids / attention_mask), those rows are checked to be ours: the same masks and the same
/// ids wherever the mask is 1 (padding ids differ — TRL pads completions with 0 and rolls the prompt's left
/// padding to the end — and are never attended to nor scored). A prefix selects one batch of a file
/// holding several (dpo-train-steps' microbatch.i.).
/// </summary>
public static class PreferenceBatchFile
{
    /// <exception cref="SafeTensorsException">A tensor is missing or malformed, or our rows differ from concatenated.*.</exception>
    public static DpoBatch Read(string path, string prefix = "", int padTokenId = 0)
    {
        using SafeTensorsReader file = SafeTensorsReader.Open(path);
        string promptIds = prefix + "prompt_input_ids";
        if (!file.Contains(promptIds))
        {
            throw new SafeTensorsException(path, promptIds, "missing: not a TRL preference batch (prompt_/chosen_/rejected_input_ids and attention_mask)");
        }
        int pairs = (int)file.GetInfo(promptIds).Shape[0];
        int[][] prompts = Unpad(file, prefix + "prompt", pairs), chosen = Unpad(file, prefix + "chosen", pairs), rejected = Unpad(file, prefix + "rejected", pairs);

        var images = new SampleImages?[pairs];
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
        if (file.Contains(prefix + "concatenated.input_ids"))
        {
            CheckRows(file, path, prefix, batch);
        }
        return batch;
    }

    /// <summary>Each row's tokens where its attention mask is 1.</summary>
    private static int[][] Unpad(SafeTensorsReader file, string name, int pairs)
    {
        long[] ids = file.ReadInt64($"{name}_input_ids"), mask = file.ReadInt64($"{name}_attention_mask");
        int length = ids.Length / pairs;
        return Enumerable.Range(0, pairs)
            .Select(p => Enumerable.Range(p * length, length).Where(i => mask[i] == 1).Select(i => (int)ids[i]).ToArray())
            .ToArray();
    }

    private static void CheckRows(SafeTensorsReader file, string path, string prefix, DpoBatch batch)
    {
        string idsName = prefix + "concatenated.input_ids", maskName = prefix + "concatenated.attention_mask";
        long[] shape = file.GetInfo(idsName).Shape.ToArray();
        if (!shape.SequenceEqual(new long[] { batch.ModelInputs.Batch, batch.ModelInputs.SeqLen }))
        {
            throw new SafeTensorsException(path, idsName,
                $"TRL's rows are [{string.Join(", ", shape)}], the collated ones [{batch.ModelInputs.Batch}, {batch.ModelInputs.SeqLen}]");
        }
        long[] ids = file.ReadInt64(idsName), attention = file.ReadInt64(maskName);
        int bad = Enumerable.Range(0, ids.Length).FirstOrDefault(i => attention[i] != batch.ModelInputs.AttentionMask[i]
                                                                      || attention[i] == 1 && ids[i] != batch.ModelInputs.InputIds[i], -1);
        if (bad >= 0)
        {
            throw new SafeTensorsException(path, idsName,
                $"row {bad / batch.ModelInputs.SeqLen}, position {bad % batch.ModelInputs.SeqLen}: TRL gave the model id {ids[bad]} (mask {attention[bad]}), " +
                $"the collation id {batch.ModelInputs.InputIds[bad]} (mask {batch.ModelInputs.AttentionMask[bad]})");
        }
    }
}
