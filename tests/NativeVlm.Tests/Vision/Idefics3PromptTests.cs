using NativeVlm.Vision;
using Xunit;

namespace NativeVlm.Tests;

public class Idefics3PromptTests
{
    [Fact]
    public void A_split_image_lists_its_tiles_row_by_row_then_the_global_image()
    {
        var prompt = new Idefics3Prompt(2);
        Assert.Equal(
            "<fake_token_around_image><row_1_col_1><image><image><fake_token_around_image><row_1_col_2><image><image>\n"
            + "\n<fake_token_around_image><global-img><image><image><fake_token_around_image>",
            prompt.ImageString(1, 2));
        Assert.Equal("<fake_token_around_image><global-img><image><fake_token_around_image>", new Idefics3Prompt(1).ImageString(0, 0));
    }

    [Fact]
    public void Each_placeholder_takes_its_own_images_string()
    {
        var prompt = new Idefics3Prompt(1);
        Assert.Equal($"a{prompt.ImageString(0, 0)}b{prompt.ImageString(2, 1)}c", prompt.Expand("a<image>b<image>c", [0, 2], [0, 1]));
    }

    [Theory]
    [InlineData("no placeholder", 1)]
    [InlineData("<image><image>", 1)]
    [InlineData("<image>", 2)]
    public void Placeholders_and_images_must_agree(string text, int images) =>
        Assert.Contains("the counts must be equal", Assert.Throws<ArgumentException>(() => new Idefics3Prompt(4).Expand(text, new int[images], new int[images])).Message);

    [Fact]
    public void Image_seq_len_comes_from_processor_config_json_or_the_default()
    {
        using var dir = new TempDirectory();
        Assert.Equal(Idefics3Prompt.DefaultImageSeqLen, Idefics3Prompt.Load(dir.Root).ImageSeqLen);
        File.WriteAllText(dir.Path(Idefics3Prompt.FileName), """{"image_seq_len": 64, "processor_class": "Idefics3Processor"}""");
        Assert.Equal(64, Idefics3Prompt.Load(dir.Root).ImageSeqLen);
    }

    [Fact]
    public void The_token_strings_come_from_tokenizer_config_jsons_extra_special_tokens()
    {
        using var dir = new TempDirectory();
        string path = dir.Path("tokenizer_config.json");
        Assert.Equal(ImageTokens.Idefics3, ImageTokens.Load(path));
        File.WriteAllText(path, """{"extra_special_tokens": {"image_token": "<|image_pad|>", "fake_image_token": {"content": "<|vision_start|>"}}}""");
        var tokens = ImageTokens.Load(path);
        Assert.Equal(new ImageTokens("<|image_pad|>", "<|vision_start|>", Idefics3Prompt.GlobalImageToken), tokens);

        var prompt = new Idefics3Prompt(1, tokens);
        Assert.Equal("a<|vision_start|><row_1_col_1><|image_pad|>\n\n<|vision_start|><global-img><|image_pad|><|vision_start|>b",
            prompt.Expand("a<|image_pad|>b", [1], [1]));
        Assert.Contains("the counts must be equal", Assert.Throws<ArgumentException>(() => prompt.Expand("a<image>b", [1], [1])).Message);
    }

    [Theory]
    [InlineData("""{"extra_special_tokens": "<image>"}""", "extra_special_tokens")]
    [InlineData("""{"extra_special_tokens": {"image_token": 5}}""", "extra_special_tokens.image_token")]
    [InlineData("""{"extra_special_tokens": {"global_image_token": ""}}""", "extra_special_tokens.global_image_token")]
    public void A_malformed_token_name_is_refused_by_name(string json, string field)
    {
        using var dir = new TempDirectory();
        File.WriteAllText(dir.Path("tokenizer_config.json"), json);
        var e = Assert.Throws<NativeVlm.Models.ConfigException>(() => ImageTokens.Load(dir.Path("tokenizer_config.json")));
        Assert.Equal(field, e.JsonPath);
        Assert.Contains(dir.Path("tokenizer_config.json"), e.Message);
    }
}
