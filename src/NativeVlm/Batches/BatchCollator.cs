using NativeVlm.Models;

namespace NativeVlm.Batches;

/// <summary>
/// Pads samples into batches ready for <see cref="Idefics3Model"/>: token rows padded with the pad
/// token (attention mask 0, label −100), and each sample's frames padded to the batch's most frames and
/// largest frame with zeros (pixel attention mask 0), which is what Idefics3ImageProcessor gives for
/// the batch processed at once. A batch where no sample has an image has no pixel tensors.
/// </summary>
public sealed class BatchCollator(int padTokenId)
{
    public int PadTokenId { get; } = padTokenId;

    /// <summary>Rows padded on the right, as TRL's SFT collators pad them.</summary>
    public Idefics3Inputs CollateSft(IReadOnlyList<SftSample> samples)
    {
        RequireSamples(samples.Count);
        int seq = samples.Max(sample => sample.InputIds.Length);
        var rows = new TokenRows(samples.Count, seq, PadTokenId);
        for (int b = 0; b < samples.Count; b++)
        {
            rows.Put(b, 0, samples[b].InputIds, samples[b].Labels);
        }
        return rows.ToInputs(PadImages(samples.Select(sample => sample.Images).ToList()));
    }

    /// <summary>TRL's DataCollatorForPreference, then concatenated_forward's model rows (see <see cref="DpoBatch"/>).</summary>
    public DpoBatch CollateDpo(IReadOnlyList<DpoSample> samples)
    {
        RequireSamples(samples.Count);
        int batch = samples.Count;
        (int promptLength, int[] promptIds, byte[] promptMask) = Pad(samples.Select(s => s.PromptIds).ToList(), left: true);
        (int chosenLength, int[] chosenIds, byte[] chosenMask) = Pad(samples.Select(s => s.ChosenIds).ToList(), left: false);
        (int rejectedLength, int[] rejectedIds, byte[] rejectedMask) = Pad(samples.Select(s => s.RejectedIds).ToList(), left: false);

        int seq = samples.Max(s => s.TokenCount);
        var rows = new TokenRows(2 * batch, seq, PadTokenId);
        for (int b = 0; b < batch; b++)
        {
            DpoSample sample = samples[b];
            int[] ignored = Enumerable.Repeat(SampleBuilder.IgnoreIndex, sample.PromptIds.Length).ToArray();
            rows.Put(b, 0, sample.PromptIds, ignored);
            rows.Put(b, sample.PromptIds.Length, sample.ChosenIds, sample.ChosenIds);
            rows.Put(batch + b, 0, sample.PromptIds, ignored);
            rows.Put(batch + b, sample.PromptIds.Length, sample.RejectedIds, sample.RejectedIds);
        }
        List<SampleImages?> images = samples.Select(s => s.Images).ToList();
        Idefics3Inputs model = rows.ToInputs(PadImages([.. images, .. images]));
        return new DpoBatch(batch, promptLength, promptIds, promptMask, chosenLength, chosenIds, chosenMask,
            rejectedLength, rejectedIds, rejectedMask, model);
    }

    private static void RequireSamples(int count)
    {
        if (count == 0)
        {
            throw new ArgumentException("a batch needs at least one sample");
        }
    }

    /// <summary>Sequences padded to the longest with the pad token, on the left or on the right, and their attention mask.</summary>
    private (int Length, int[] Ids, byte[] Mask) Pad(IReadOnlyList<int[]> sequences, bool left)
    {
        int length = sequences.Max(s => s.Length);
        var ids = new int[sequences.Count * length];
        var mask = new byte[sequences.Count * length];
        Array.Fill(ids, PadTokenId);
        for (int b = 0; b < sequences.Count; b++)
        {
            int start = b * length + (left ? length - sequences[b].Length : 0);
            sequences[b].CopyTo(ids, start);
            mask.AsSpan(start, sequences[b].Length).Fill(1);
        }
        return (length, ids, mask);
    }

    /// <summary>
    /// pixel_values [rows, slots, 3, height, width] and pixel_attention_mask [rows, slots, height, width]:
    /// each frame zero-padded at the bottom and right, each row's missing slots all zero; null when no row has an image.
    /// </summary>
    private static (float[]? Values, int[]? Shape, byte[]? Mask) PadImages(IReadOnlyList<SampleImages?> rows)
    {
        List<SampleImages> present = rows.OfType<SampleImages>().ToList();
        if (present.Count == 0)
        {
            return (null, null, null);
        }
        int slots = present.Max(images => images.Frames);
        int height = present.Max(images => images.Height);
        int width = present.Max(images => images.Width);
        int plane = height * width;
        var values = new float[checked(rows.Count * slots * 3 * plane)];
        var mask = new byte[rows.Count * slots * plane];
        for (int r = 0; r < rows.Count; r++)
        {
            if (rows[r] is not SampleImages images)
            {
                continue;
            }
            int framePlane = images.Height * images.Width;
            for (int n = 0; n < images.Frames; n++)
            {
                int slot = r * slots + n;
                for (int y = 0; y < images.Height; y++)
                {
                    for (int c = 0; c < 3; c++)
                    {
                        images.PixelValues.AsSpan(((n * 3 + c) * framePlane) + y * images.Width, images.Width)
                            .CopyTo(values.AsSpan(((slot * 3 + c) * plane) + y * width));
                    }
                    images.PixelAttentionMask.AsSpan(n * framePlane + y * images.Width, images.Width).CopyTo(mask.AsSpan(slot * plane + y * width));
                }
            }
        }
        return (values, [rows.Count, slots, 3, height, width], mask);
    }

    /// <summary>Token rows filled from the left and padded on the right, with labels.</summary>
    private sealed class TokenRows
    {
        private readonly int _seq;
        private readonly int[] _ids;
        private readonly byte[] _attention;
        private readonly int[] _labels;

        public TokenRows(int rows, int seq, int padTokenId)
        {
            _seq = seq;
            _ids = new int[rows * seq];
            _attention = new byte[rows * seq];
            _labels = new int[rows * seq];
            Array.Fill(_ids, padTokenId);
            Array.Fill(_labels, SampleBuilder.IgnoreIndex);
        }

        public void Put(int row, int offset, int[] ids, int[] labels)
        {
            int start = row * _seq + offset;
            ids.CopyTo(_ids, start);
            labels.CopyTo(_labels, start);
            _attention.AsSpan(start, ids.Length).Fill(1);
        }

        /// <summary>The inputs, with target_mask[b, t] = 1 where labels[b, t + 1] is counted.</summary>
        public Idefics3Inputs ToInputs((float[]? Values, int[]? Shape, byte[]? Mask) pixels)
        {
            int rows = _ids.Length / _seq;
            var target = new byte[rows * (_seq - 1)];
            for (int b = 0; b < rows; b++)
            {
                for (int t = 0; t + 1 < _seq; t++)
                {
                    target[b * (_seq - 1) + t] = _labels[b * _seq + t + 1] == SampleBuilder.IgnoreIndex ? (byte)0 : (byte)1;
                }
            }
            return new Idefics3Inputs(rows, _seq, _ids, _attention, pixels.Values, pixels.Shape, pixels.Mask, _labels, target);
        }
    }
}
