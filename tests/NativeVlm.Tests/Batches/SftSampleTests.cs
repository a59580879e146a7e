using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Models;
using NativeVlm.Vision;
using Xunit;
using static NativeVlm.Demo.DemoSnapshot;
using static NativeVlm.Tests.Batches.TinySnapshot;

namespace NativeVlm.Tests.Batches;

/// <summary>
/// SFT samples on the tiny snapshot: labels on the assistant turns only, or on the whole text but the
/// &lt;image&gt; tokens; truncation that never cuts image tokens; and the collator's padding.
/// </summary>
[Trait("Category", Fixtures.Category)]
public sealed class SftSampleTests : IDisposable
{
    private static readonly RowLocation Here = new("cauldron.parquet", 3);

    private readonly TinySnapshot _snapshot = new();

    public void Dispose() => _snapshot.Dispose();

    private static ConversationRow TwoTurns(params DatasetImage[] images) =>
        new(Here, images, [new ConversationTurn("Q1", "A1", null), new ConversationTurn("Q2", "A2", null)]);

    private (SftSample? Sample, DatasetSummary Summary, List<BadRow> Bad) Build(ConversationRow row, SftLoss loss = SftLoss.AssistantTurns, int? maxLength = null)
    {
        var summary = new DatasetSummary();
        var bad = new List<BadRow>();
        var builder = new SampleBuilder(_snapshot.Processor, new SampleLimits(MaxLength: maxLength), loss);
        return (builder.BuildSft(row, BadRowPolicy.SkipAndWarn(bad.Add), summary), summary, bad);
    }

    /// <summary>The render of <see cref="TwoTurns"/> cut where the spans are: (text, trained).</summary>
    private (string Text, bool Trained)[] Spans() =>
    [
        ($"{ImStart}User:{_snapshot.Processor.Prompt.ImageString(1, 2)}Q1{EndOfUtterance}\nAssistant:", false),
        ($" A1{EndOfUtterance}\n", true),
        ($"User: Q2{EndOfUtterance}\nAssistant:", false),
        ($" A2{EndOfUtterance}\n", true),
    ];

    [Fact]
    public void Only_the_assistant_turns_and_their_end_of_turn_carry_labels()
    {
        (SftSample? sample, _, _) = Build(TwoTurns(Image(64, 32)));

        (string Text, bool Trained)[] spans = Spans();
        Assert.Equal(spans.SelectMany(span => Ids(span.Text)), sample!.InputIds);
        Assert.Equal(spans.SelectMany(span => span.Trained ? Ids(span.Text) : Ids(span.Text).Select(_ => -100)), sample.Labels);
        // 41 masked (12 of them image tokens), 5 trained, 20 masked, 5 trained.
        Assert.Equal(71, sample.InputIds.Length);
        Assert.Equal(10, sample.Labels.Count(label => label != -100));
        Assert.Equal(Here, sample.Location);
    }

    [Fact]
    public void The_whole_text_recipe_masks_only_the_image_tokens()
    {
        (SftSample? sample, _, _) = Build(TwoTurns(Image(64, 32)), SftLoss.WholeText);

        int imageId = TokenId(Idefics3Prompt.ImageToken);
        int[] ids = Spans().SelectMany(span => Ids(span.Text)).ToArray();
        Assert.Equal(ids, sample!.InputIds);
        Assert.Equal(ids.Select(id => id == imageId ? -100 : id), sample.Labels);
        Assert.Equal(12, sample.Labels.Count(label => label == -100));
    }

    [Fact]
    public void Truncation_that_would_cut_image_tokens_or_every_loss_token_skips_the_row_and_otherwise_keeps_the_start()
    {
        (SftSample? imageCut, _, List<BadRow> imageBad) = Build(TwoTurns(Image(64, 32)), maxLength: 20);
        (SftSample? noLoss, _, List<BadRow> noLossBad) = Build(TwoTurns(Image(64, 32)), maxLength: 41);
        (SftSample? cut, _, _) = Build(TwoTurns(Image(64, 32)), maxLength: 60);
        (SftSample? full, _, _) = Build(TwoTurns(Image(64, 32)));

        Assert.Null(imageCut);
        Assert.Equal(BadRowReason.ImageTokensOverMaxLength, Assert.Single(imageBad).Reason);
        Assert.Equal("cauldron.parquet: row 3: the conversation is 71 tokens (12 of them image tokens), max_length is 20: truncating it would cut image tokens",
            imageBad[0].ToString());
        Assert.Null(noLoss);
        Assert.Equal(BadRowReason.NoLossTokenWithinMaxLength, Assert.Single(noLossBad).Reason);
        Assert.Equal(full!.InputIds[..60], cut!.InputIds);
        Assert.Equal(full.Labels[..60], cut.Labels);
    }

    [Fact]
    public void A_placeholder_in_the_text_beyond_the_images_is_a_counted_mismatch()
    {
        var row = new ConversationRow(Here, [Image(64, 32)], [new ConversationTurn("Compare with <image>", "Same.", null)]);

        (SftSample? sample, DatasetSummary summary, List<BadRow> bad) = Build(row);

        Assert.Null(sample);
        Assert.Equal("cauldron.parquet: row 3: the rendered conversation holds 2 <image> placeholders and the row has 1 images for it",
            Assert.Single(bad).ToString());
        Assert.Equal(1, summary.SkippedByReason[BadRowReason.ImageCountMismatch]);
    }

    [Fact]
    public void An_undecodable_image_is_a_counted_bad_row_or_under_strict_an_error()
    {
        ConversationRow row = TwoTurns(new DatasetImage([0xFF, 0xD8, 0xFF, 0xE0, 0, 0], null));

        (SftSample? sample, DatasetSummary summary, List<BadRow> bad) = Build(row);
        var builder = new SampleBuilder(_snapshot.Processor, new SampleLimits());
        DatasetException e = Assert.Throws<DatasetException>(() => builder.BuildSft(row, BadRowPolicy.Strict, new DatasetSummary()));

        Assert.Null(sample);
        Assert.Equal("cauldron.parquet: row 3: images[0]: JPEG has no frame header before its scan data (corrupt or truncated)", Assert.Single(bad).ToString());
        Assert.Equal(1, summary.SkippedByReason[BadRowReason.UndecodableImage]);
        Assert.Equal(BadRowReason.UndecodableImage, e.Reason);
        Assert.Equal(bad[0].ToString(), e.Message);
    }

    [Fact]
    public void The_collator_pads_on_the_right_and_its_pixels_equal_the_batch_processed_at_once()
    {
        SftSample split = Build(TwoTurns(Image(64, 32))).Sample!;
        SftSample square = Build(new ConversationRow(Here, [Image(20, 20)], [new ConversationTurn("Q", "A", null)])).Sample!;
        SftSample textOnly = Build(new ConversationRow(Here, [], [new ConversationTurn("Hi", "Yo", null)])).Sample!;

        Idefics3Inputs batch = new BatchCollator(_snapshot.Processor.PadTokenId).CollateSft([split, square, textOnly]);

        int seq = 71, pad = TokenId(Pad);
        Assert.Equal((3, seq), (batch.Batch, batch.SeqLen));
        Assert.Equal([.. square.InputIds, .. Enumerable.Repeat(pad, seq - square.InputIds.Length)], batch.InputIds[seq..(2 * seq)]);
        Assert.Equal([.. square.Labels, .. Enumerable.Repeat(-100, seq - square.Labels.Length)], batch.Labels![seq..(2 * seq)]);
        Assert.Equal([.. Enumerable.Repeat((byte)1, textOnly.InputIds.Length), .. Enumerable.Repeat((byte)0, seq - textOnly.InputIds.Length)],
            batch.AttentionMask[(2 * seq)..]);

        ProcessedImages together = _snapshot.Processor.ImageProcessor.Process([
            [ImageDecoder.Decode(Png(64, 32), "a")],
            [ImageDecoder.Decode(Png(20, 20), "b")],
        ]);
        int rowPixels = together.PixelValues.Length / 2, rowMask = together.PixelAttentionMask.Length / 2;
        Assert.Equal([3, 5, 3, 32, 32], batch.PixelShape!);
        Assert.Equal(together.PixelValues, batch.PixelValues![..(2 * rowPixels)]);
        Assert.Equal(together.PixelAttentionMask, batch.PixelAttentionMask![..(2 * rowMask)]);
        Assert.All(batch.PixelValues[(2 * rowPixels)..], value => Assert.Equal(0f, value));
        Assert.All(batch.PixelAttentionMask[(2 * rowMask)..], value => Assert.Equal(0, value));
    }
}
