using NativeVlm.Batches;
using NativeVlm.Data;
using NativeVlm.Demo;
using NativeVlm.Generation;
using Xunit;
using static NativeVlm.Tests.Data.DatasetTestReads;
using static NativeVlm.Tests.Data.DuckDbParquet;

namespace NativeVlm.Tests.Generation;

/// <summary>Prompts read from samples files with the demo snapshot's processor (SmolVLM's chat template, byte tokens).</summary>
public sealed class GenerationSamplesTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly GenerationPrompts _prompts;

    public GenerationSamplesTests()
    {
        DemoSnapshot.Create(_dir.Path("model"), seed: 0);
        _prompts = new GenerationPrompts(VlmProcessor.Load(_dir.Path("model")));
    }

    [Fact]
    public async Task A_conversation_row_prompts_with_its_first_user_turn_and_keeps_the_answer_as_reference()
    {
        string path = _dir.Path("cauldron.parquet");
        byte[] png = PngEncoder.EncodeRgb(ShapePicture.Random(new Random(2)).Draw());
        var row = new ConversationRow(new RowLocation(path, 0), [new DatasetImage(png, null)],
            [new ConversationTurn("What colour?", "Red.", null), new ConversationTurn("And the shape?", "A circle.", null)]);
        Write(path, ConversationColumns, [ConversationTuple(row)]);

        List<GenerationPrompt> prompts = await ToListAsync(GenerationSamples.ReadAsync(_prompts, path, "train", BadRowPolicy.Strict, new DatasetSummary()));

        GenerationPrompt prompt = Assert.Single(prompts);
        // generate_text_from_sample: the messages before the first assistant turn, then the generation prompt.
        Assert.Equal("<|im_start|>User:<image>What colour?<end_of_utterance>\nAssistant:", prompt.Text);
        Assert.Equal("Red.", prompt.Reference);
        Assert.Equal($"{path}: row 0", prompt.Source);
        int imageTokens = prompt.InputIds.Count(id => id == _prompts.Processor.ImageTokenId);
        Assert.Equal(prompt.Images!.Frames * _prompts.Processor.Prompt.ImageSeqLen, imageTokens);
    }

    [Fact]
    public async Task A_bad_json_entry_is_an_error_naming_the_file_and_the_entry()
    {
        string path = _dir.Path("samples.json");
        File.WriteAllText(path, """[{"prompt": "Hi"}, {"images": ["a.png"]}]""");

        var e = await Assert.ThrowsAsync<DatasetException>(() =>
            ToListAsync(GenerationSamples.ReadAsync(_prompts, path, "train", BadRowPolicy.Strict, new DatasetSummary())));

        Assert.Equal($"{path}: row 1: prompt is missing or not a string", e.Message);
    }

    [Fact]
    public void A_prompt_whose_placeholders_do_not_match_its_images_names_its_source()
    {
        // The user's own text holds an image token, so the render has two placeholders for one image.
        string image = _dir.Path("a.png");
        File.WriteAllBytes(image, PngEncoder.EncodeRgb(ShapePicture.Random(new Random(2)).Draw()));

        var e = Assert.Throws<ArgumentException>(() => _prompts.FromImageFiles([image], "Compare with <image>"));

        Assert.StartsWith("--prompt: the rendered prompt holds 2 <image> placeholders and 1 images", e.Message);
    }

    public void Dispose() => _dir.Dispose();
}
