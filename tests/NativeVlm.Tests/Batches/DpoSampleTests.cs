using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Models;
using NativeVlm.Vision;
using Xunit;
using static NativeVlm.Demo.DemoSnapshot;
using static NativeVlm.Tests.Batches.TinySnapshot;

namespace NativeVlm.Tests.Batches;

/// <summary>
/// DPO samples and batches as TRL's DPOTrainer builds them for a vision model, on the tiny snapshot
/// (one token per character, 4 image tokens per frame, 32-pixel tiles): a 64×32 image is split into
/// 1 × 2 tiles plus the global image, a 20×20 one (resized to 64×64) into 2 × 2 plus the global image.
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class DpoSampleTests : IDisposable
{
    private static readonly RowLocation Here = new("pairs.parquet", 7);

    private readonly TinySnapshot _snapshot = new();

    public void Dispose() => _snapshot.Dispose();

    internal static PreferenceRow Pair(string question, DatasetImage[] images, string chosen = "Red.", string rejected = "Blue sky.", RowLocation? location = null) => new(
        location ?? Here,
        [new ChatMessage("user", [.. images.Select(_ => ContentItem.ImagePlaceholder), ContentItem.FromText(question)])],
        [new ChatMessage("assistant", [ContentItem.FromText(chosen)])],
        [new ChatMessage("assistant", [ContentItem.FromText(rejected)])],
        images);

    private (DpoSample? Sample, DatasetSummary Summary, List<BadRow> Bad) Build(PreferenceRow row, SampleLimits? limits = null)
    {
        var summary = new DatasetSummary();
        var bad = new List<BadRow>();
        var builder = new SampleBuilder(_snapshot.Processor, limits ?? new SampleLimits());
        return (builder.BuildDpo(row, BadRowPolicy.SkipAndWarn(bad.Add), summary), summary, bad);
    }

    private static string PromptText(string imageString, string question) =>
        $"{ImStart}User:{imageString}{question}{EndOfUtterance}\nAssistant:";

    private int[] ChosenIds(string text) => [.. Ids($" {text}{EndOfUtterance}\n"), TokenId(EndOfUtterance)];

    [Fact]
    public void The_prompt_has_the_generation_prompt_and_the_expanded_image_and_completions_end_with_eos()
    {
        (DpoSample? sample, _, _) = Build(Pair("What?", [Image(64, 32)]));

        Assert.NotNull(sample);
        string imageString = _snapshot.Processor.Prompt.ImageString(1, 2);
        // 2 tiles and the global image, each fake + position token + 4 image tokens (global: + closing fake), and 2 newlines.
        Assert.Equal(21, Ids(imageString).Length);
        Assert.Equal(Ids(PromptText(imageString, "What?")), sample.PromptIds);
        Assert.Equal(ChosenIds("Red."), sample.ChosenIds);
        Assert.Equal(ChosenIds("Blue sky."), sample.RejectedIds);
        Assert.Equal(3, sample.Images!.Frames);
        Assert.Equal([1], sample.Images.Rows);
        Assert.Equal([2], sample.Images.Cols);
        Assert.Equal(Here, sample.Location);
    }

    [Fact]
    public void A_batch_pads_prompts_left_completions_right_and_masks_prompt_image_and_padding_in_the_labels()
    {
        DpoSample first = Build(Pair("What?", [Image(64, 32)])).Sample!;
        DpoSample second = Build(Pair("Why?", [Image(20, 20)], chosen: "A long chosen answer.", rejected: "No.")).Sample!;
        int pad = TokenId(Pad);

        DpoBatch batch = new BatchCollator(_snapshot.Processor.PadTokenId).CollateDpo([first, second]);

        // Prompts: 44 and 56 tokens, padded on the left to 56.
        Assert.Equal((44, 56), (first.PromptIds.Length, second.PromptIds.Length));
        Assert.Equal(56, batch.PromptLength);
        Assert.Equal([.. Enumerable.Repeat(pad, 12), .. first.PromptIds], batch.PromptIds[..56]);
        Assert.Equal([.. Enumerable.Repeat((byte)0, 12), .. Enumerable.Repeat((byte)1, 44)], batch.PromptAttentionMask[..56]);
        Assert.Equal(second.PromptIds, batch.PromptIds[56..]);
        // Chosen: 8 and 25 tokens, padded on the right to 25; rejected: 13 and 7, to 13.
        Assert.Equal(25, batch.ChosenLength);
        Assert.Equal([.. first.ChosenIds, .. Enumerable.Repeat(pad, 17)], batch.ChosenIds[..25]);
        Assert.Equal([.. Enumerable.Repeat((byte)1, 8), .. Enumerable.Repeat((byte)0, 17)], batch.ChosenAttentionMask[..25]);
        Assert.Equal(13, batch.RejectedLength);
        Assert.Equal([.. second.RejectedIds, .. Enumerable.Repeat(pad, 6)], batch.RejectedIds[13..]);

        // The model's rows: chosen pairs, then rejected pairs, each flushed left; 56 + 25 = 81 columns.
        Idefics3Inputs model = batch.ModelInputs;
        Assert.Equal((4, 81), (model.Batch, model.SeqLen));
        AssertRow(model, 0, first.PromptIds, first.ChosenIds, pad);
        AssertRow(model, 1, second.PromptIds, second.ChosenIds, pad);
        AssertRow(model, 2, first.PromptIds, first.RejectedIds, pad);
        AssertRow(model, 3, second.PromptIds, second.RejectedIds, pad);

        // Each row's frames, padded to the most (5): the batch's pixels twice.
        Assert.Equal([4, 5, 3, 32, 32], model.PixelShape!);
        int frame = 3 * 32 * 32;
        Assert.Equal(first.Images!.PixelValues, model.PixelValues![..(3 * frame)]);
        Assert.All(model.PixelValues[(3 * frame)..(5 * frame)], value => Assert.Equal(0f, value));
        Assert.Equal(model.PixelValues[..(10 * frame)], model.PixelValues[(10 * frame)..]);
        Assert.Equal(3 * 1024, model.PixelAttentionMask![..(5 * 1024)].Count(m => m == 1));
    }

    /// <summary>input_ids = prompt + completion + padding; labels −100 but on the completion; target_mask the labels shifted.</summary>
    private static void AssertRow(Idefics3Inputs model, int row, int[] prompt, int[] completion, int pad)
    {
        int seq = model.SeqLen, padding = seq - prompt.Length - completion.Length;
        Assert.Equal([.. prompt, .. completion, .. Enumerable.Repeat(pad, padding)], model.InputIds[(row * seq)..((row + 1) * seq)]);
        Assert.Equal([.. Enumerable.Repeat((byte)1, prompt.Length + completion.Length), .. Enumerable.Repeat((byte)0, padding)],
            model.AttentionMask[(row * seq)..((row + 1) * seq)]);
        int[] labels = [.. Enumerable.Repeat(-100, prompt.Length), .. completion, .. Enumerable.Repeat(-100, padding)];
        Assert.Equal(labels, model.Labels![(row * seq)..((row + 1) * seq)]);
        Assert.Equal(labels[1..].Select(l => l == -100 ? (byte)0 : (byte)1), model.TargetMask![(row * (seq - 1))..((row + 1) * (seq - 1))]);
    }

    [Fact]
    public void A_prompt_whose_image_tokens_max_prompt_length_would_cut_is_skipped_with_its_reason()
    {
        // The prompt's first 6 tokens are "<|im_start|>User:"; its 7th opens the image.
        (DpoSample? headCut, _, _) = Build(Pair("What?", [Image(64, 32)]), new SampleLimits(MaxPromptLength: 38));
        (DpoSample? sample, DatasetSummary summary, List<BadRow> bad) = Build(Pair("What?", [Image(64, 32)]), new SampleLimits(MaxPromptLength: 37));

        Assert.Equal(Ids(PromptText(_snapshot.Processor.Prompt.ImageString(1, 2), "What?"))[6..], headCut!.PromptIds);
        Assert.Equal(TokenId(Idefics3Prompt.FakeImageToken), headCut.PromptIds[0]);
        Assert.Null(sample);
        Assert.Equal(BadRowReason.PromptOverMaxPromptLength, Assert.Single(bad).Reason);
        Assert.Equal(
            "pairs.parquet: row 7: the prompt is 44 tokens (12 of them image tokens), max_prompt_length is 37: truncating it would cut image tokens",
            bad[0].ToString());
        Assert.Equal(1, summary.SkippedByReason[BadRowReason.PromptOverMaxPromptLength]);
    }

    [Fact]
    public void A_text_only_prompt_is_cut_from_the_left_as_TRL_cuts_it()
    {
        (DpoSample? sample, _, _) = Build(Pair("What?", []), new SampleLimits(MaxPromptLength: 10));

        Assert.Equal(Ids(PromptText("", "What?"))[^10..], sample!.PromptIds);
        Assert.Null(sample.Images);
    }

    [Fact]
    public void A_prompt_that_fills_max_length_is_skipped_and_completions_are_cut_to_fit()
    {
        (DpoSample? skipped, _, List<BadRow> bad) = Build(Pair("What?", [Image(64, 32)]), new SampleLimits(MaxLength: 44));
        (DpoSample? cut, _, _) = Build(Pair("What?", [Image(64, 32)]), new SampleLimits(MaxLength: 46, MaxCompletionLength: 10));
        (DpoSample? cutByCompletion, _, _) = Build(Pair("What?", [Image(64, 32)]), new SampleLimits(MaxLength: 100, MaxCompletionLength: 3));

        Assert.Null(skipped);
        Assert.Equal(BadRowReason.PromptOverMaxLength, Assert.Single(bad).Reason);
        Assert.Contains("the prompt is 44 tokens (12 of them image tokens), max_length is 44: no completion token fits after it", bad[0].Detail);
        Assert.Equal(ChosenIds("Red.")[..2], cut!.ChosenIds);
        Assert.Equal(ChosenIds("Blue sky.")[..2], cut.RejectedIds);
        Assert.Equal(ChosenIds("Red.")[..3], cutByCompletion!.ChosenIds);
        Assert.Equal(ChosenIds("Blue sky.")[..3], cutByCompletion.RejectedIds);
    }

    [Fact]
    public void Images_that_do_not_match_the_placeholders_are_a_counted_mismatch()
    {
        PreferenceRow twoImagesOnePlaceholder = Pair("What?", [Image(64, 32)]) with { Images = [Image(64, 32), Image(20, 20)] };
        PreferenceRow placeholderInCompletion = Pair("What?", [Image(64, 32)], chosen: "See <image>.");

        (DpoSample? first, DatasetSummary summary, List<BadRow> bad) = Build(twoImagesOnePlaceholder);
        (DpoSample? second, _, List<BadRow> bad2) = Build(placeholderInCompletion);

        Assert.Null(first);
        Assert.Null(second);
        Assert.Equal("pairs.parquet: row 7: the rendered prompt holds 1 <image> placeholders and the row has 2 images for it", Assert.Single(bad).ToString());
        Assert.Equal("the chosen completion holds 1 <image> placeholders and the row has 0 images for it", Assert.Single(bad2).Detail);
        Assert.Equal(BadRowReason.ImageCountMismatch, bad2[0].Reason);
        Assert.Equal(1, summary.SkippedByReason[BadRowReason.ImageCountMismatch]);
    }

    [Fact]
    public void An_undecodable_image_is_skipped_naming_file_row_and_image_or_fails_under_strict()
    {
        PreferenceRow row = Pair("What?", [new DatasetImage([0x89, 0x50, 0x4E, 0x47, 1, 2, 3], "broken.png")]);

        (DpoSample? sample, DatasetSummary summary, List<BadRow> bad) = Build(row);
        var strict = new SampleBuilder(_snapshot.Processor, new SampleLimits());
        DatasetException e = Assert.Throws<DatasetException>(() => strict.BuildDpo(row, BadRowPolicy.Strict, new DatasetSummary()));

        Assert.Null(sample);
        Assert.Equal(BadRowReason.UndecodableImage, Assert.Single(bad).Reason);
        Assert.StartsWith("pairs.parquet: row 7: images[0] (broken.png): ", bad[0].ToString());
        Assert.Equal(1, summary.SkippedByReason[BadRowReason.UndecodableImage]);
        Assert.Equal(BadRowReason.UndecodableImage, e.Reason);
        Assert.Equal(("pairs.parquet", 7L), (e.FilePath, e.Row));
        Assert.StartsWith("pairs.parquet: row 7: images[0] (broken.png): ", e.Message);
    }
}
