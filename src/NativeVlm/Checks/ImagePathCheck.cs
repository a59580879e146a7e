using NativeVlm.Autograd;
using NativeVlm.Models;
using NativeVlm.Nn;
using NativeVlm.Tensors;
using NativeVlm.Vision;

namespace NativeVlm.Checks;

/// <summary>What <see cref="ImagePathCheck.Run"/> measured; the numbers are null when the check stopped before running the model.</summary>
/// <param name="ImageTokens">Tokens of the prompt that are config.json's image_token_id.</param>
/// <param name="ImageFeatures">Features the images give: real frames × image_seq_len.</param>
/// <param name="FirstImagePosition">Position of the first image token.</param>
/// <param name="MaxLogitChangeBeforeImage">max |logits(image 1) − logits(image 2)| over the positions before it: causality makes it exactly 0.</param>
/// <param name="MaxLogitChangeFromImage">The same from the first image token on: above 0 when the image reaches the decoder.</param>
/// <param name="ConnectorGradientNorm">‖d loss / d connector weight‖ of the LM loss with image 1: finite and above 0 when the loss reaches the connector.</param>
/// <param name="Failure">Why the image does not reach the decoder; null when it does.</param>
public sealed record ImagePathResult(
    int ImageTokens,
    int ImageFeatures,
    int? FirstImagePosition,
    double? MaxLogitChangeBeforeImage,
    double? MaxLogitChangeFromImage,
    double? ConnectorGradientNorm,
    string? Failure)
{
    public bool Passed => Failure == null;
}

/// <summary>
/// Proves that images reach the decoder, by behaviour rather than by config: the same prompt with two
/// different random images must give the same logits before the first image token and different ones
/// from it on, and the LM loss must have a finite, non-zero gradient on the connector. A model whose
/// image_token_id is stale (not the token the prompt carries) fails, as does one whose connector
/// output does not depend on the image. A stitched model trained that way sees no image while its
/// loss still falls.
/// </summary>
public static class ImagePathCheck
{
    public const int FirstImageSeed = 1, SecondImageSeed = 2;

    /// <summary>Runs the check on a batch of one; <paramref name="second"/> differs from <paramref name="first"/> in its pixels only.</summary>
    public static ImagePathResult Run(Idefics3Model model, Idefics3Inputs first, Idefics3Inputs second)
    {
        if (first.Batch != 1 || !first.InputIds.SequenceEqual(second.InputIds) || first.Labels == null || first.PixelValues == null)
        {
            throw new ArgumentException("the image path check takes one sample with pixel_values and labels, twice with the same input_ids");
        }
        Idefics3Config config = model.Config;
        int imageTokens = first.InputIds.Count(id => id == config.ImageTokenId);
        int frames = RealFrames(first);
        int features = frames * config.ImageSeqLen;
        if (imageTokens != features)
        {
            string failure = imageTokens == 0
                ? $"no token of the prompt is config.json's image_token_id {config.ImageTokenId}: the {features} image features " +
                  $"({frames} frames × image_seq_len {config.ImageSeqLen}) have no place in the decoder, so the image never reaches it"
                : $"the prompt holds {imageTokens} tokens of config.json's image_token_id {config.ImageTokenId}, but the images give " +
                  $"{features} features ({frames} frames × image_seq_len {config.ImageSeqLen})";
            return new ImagePathResult(imageTokens, features, null, null, null, null, failure);
        }
        int firstImage = Array.IndexOf(first.InputIds, config.ImageTokenId);
        int vocab = config.Text.VocabSize;
        float[] logitsFirst = Logits(model, first), logitsSecond = Logits(model, second);      // [1, seq, vocab]
        double before = MaxAbsDifference(logitsFirst, logitsSecond, 0, firstImage * vocab);
        double from = MaxAbsDifference(logitsFirst, logitsSecond, firstImage * vocab, logitsFirst.Length);
        double gradient = ConnectorGradientNorm(model, first);
        string? problem = before != 0
            ? $"the logits before the first image token changed by {before:E2} with the image: a text position sees the image"
            : from == 0
                ? "the logits from the first image token on do not change with the image: the image does not reach the decoder"
                : !double.IsFinite(gradient) || gradient == 0
                    ? $"the connector's gradient norm of the LM loss is {gradient}: the loss does not reach the connector"
                    : null;
        return new ImagePathResult(imageTokens, features, firstImage, before, from, gradient, problem);
    }

    /// <summary>The first sample of a batch (an inputs file's), as a batch of one; labels from the file, else input_ids with image tokens and padding ignored.</summary>
    public static Idefics3Inputs FirstSample(Idefics3Inputs batch, int imageTokenId)
    {
        int seq = batch.SeqLen;
        int[] ids = batch.InputIds[..seq];
        byte[] attention = batch.AttentionMask[..seq];
        int[] labels = batch.Labels?[..seq]
            ?? ids.Select((id, t) => id == imageTokenId || attention[t] == 0 ? Ops.IgnoreIndex : id).ToArray();
        float[]? pixels = null;
        int[]? pixelShape = null;
        byte[]? pixelMask = null;
        if (batch.PixelShape is { } shape)
        {
            int slotsValues = shape[1] * shape[2] * shape[3] * shape[4], slotsMask = shape[1] * shape[3] * shape[4];
            pixels = batch.PixelValues![..slotsValues];
            pixelMask = batch.PixelAttentionMask![..slotsMask];
            pixelShape = [1, shape[1], shape[2], shape[3], shape[4]];
        }
        return new Idefics3Inputs(1, seq, ids, attention, pixels, pixelShape, pixelMask, labels, null);
    }

    /// <summary>
    /// <paramref name="inputs"/> with every valid pixel (pixel_attention_mask 1) of pixel_values drawn
    /// uniformly from [−1, 1], the range of normalised pixels, by <paramref name="seed"/>; padding stays 0.
    /// </summary>
    public static Idefics3Inputs WithRandomPixels(Idefics3Inputs inputs, int seed)
    {
        int[] shape = inputs.PixelShape ?? throw new ArgumentException("the inputs have no pixel_values");
        var random = new Random(seed);
        int channels = shape[2], plane = shape[3] * shape[4];
        var pixels = new float[inputs.PixelValues!.Length];
        for (int frame = 0; frame < shape[0] * shape[1]; frame++)
        {
            for (int c = 0; c < channels; c++)
            {
                for (int p = 0; p < plane; p++)
                {
                    if (inputs.PixelAttentionMask![frame * plane + p] != 0)
                    {
                        pixels[(frame * channels + c) * plane + p] = (float)(2 * random.NextDouble() - 1);
                    }
                }
            }
        }
        return inputs with { PixelValues = pixels };
    }

    /// <summary>
    /// One user turn (<see cref="ImageTokenCounts.UserTurn"/>) rendered by the snapshot's chat template and
    /// tokenized, with a random RGB image of one tile drawn by <paramref name="seed"/> and processed by its
    /// image processor. The labels are the ids, the tokenizer's image tokens ignored.
    /// </summary>
    public static Idefics3Inputs FromProcessor(SnapshotProcessor processor, int seed)
    {
        if (processor is not { ImageProcessor: { } imageProcessor, Tokenizer: { } tokenizer, Template: { } template })
        {
            throw new ArgumentException(MissingPromptFiles(processor));
        }
        int side = imageProcessor.Config.MaxImageSize;
        var bytes = new byte[side * side * 3];
        new Random(seed).NextBytes(bytes);
        var image = new DecodedImage($"random image (seed {seed})", ImageMode.RGB, new Raster(side, side, 3, bytes));
        ProcessedImages processed = imageProcessor.Process([[image]]);
        string text = template.Render([ImageTokenCounts.UserTurn()], addGenerationPrompt: true);
        string expanded = processor.Prompt.Expand(text, processed.Rows[0], processed.Cols[0]);
        int[] ids = tokenizer.Encode(expanded, addSpecialTokens: false);
        int? imageId = tokenizer.TokenToId(processor.Prompt.Tokens.Image);
        int[] labels = ids.Select(id => id == imageId ? Ops.IgnoreIndex : id).ToArray();
        byte[] attention = Enumerable.Repeat((byte)1, ids.Length).ToArray();
        return new Idefics3Inputs(1, ids.Length, ids, attention, processed.PixelValues, processed.PixelShape, processed.PixelAttentionMask, labels, null);
    }

    /// <summary>Why <see cref="FromProcessor"/> cannot build a prompt for the snapshot; null when it can.</summary>
    public static string? MissingPromptFiles(SnapshotProcessor processor) =>
        processor.ImageProcessor == null || processor.Tokenizer == null || processor.Template == null
            ? $"{processor.Directory}: the image path check needs a tokenizer.json, a chat template and a " +
              $"{Idefics3ImageProcessorConfig.FileName} (or an inputs file, --inputs)"
            : null;

    /// <summary>Slots whose pixels are not all zero, as Idefics3Model's real_images_inds.</summary>
    private static int RealFrames(Idefics3Inputs inputs)
    {
        int[] shape = inputs.PixelShape!;
        int frameSize = shape[2] * shape[3] * shape[4];
        return Enumerable.Range(0, shape[0] * shape[1]).Count(slot => inputs.PixelValues!.AsSpan(slot * frameSize, frameSize).ContainsAnyExcept(0f));
    }

    private static float[] Logits(Idefics3Model model, Idefics3Inputs inputs)
    {
        using var scope = new TensorScope();
        using IDisposable noGrad = Tape.NoGrad();
        return model.Logits(model.Forward(inputs)).ToFloatArray();
    }

    private static double MaxAbsDifference(float[] a, float[] b, int start, int end)
    {
        double max = 0;
        for (int i = start; i < end; i++)
        {
            max = Math.Max(max, Math.Abs((double)a[i] - b[i]));
        }
        return max;
    }

    /// <summary>‖d loss / d modality_projection.proj.weight‖₂ of transformers' causal-LM loss; the weight's gradient state is restored after.</summary>
    private static double ConnectorGradientNorm(Idefics3Model model, Idefics3Inputs inputs)
    {
        Tensor weight = model.Connector.Projection.Weight is DenseWeight dense
            ? dense.Tensor
            : throw new ArgumentException("the connector's weight is quantised: the image path check needs the dense (f32) weights");
        bool requiredGrad = weight.RequiresGrad;
        weight.RequiresGrad = true;
        try
        {
            using var tape = new Tape();
            Tensor loss = model.Loss(model.Forward(inputs), inputs);
            tape.Backward(loss);
            // No gradient at all means the loss does not depend on the connector.
            float[] gradient = weight.Grad?.ToFloatArray() ?? [];
            return Math.Sqrt(gradient.Sum(g => (double)g * g));
        }
        finally
        {
            weight.Grad?.Dispose();
            weight.Grad = null;
            weight.RequiresGrad = requiredGrad;
        }
    }
}
