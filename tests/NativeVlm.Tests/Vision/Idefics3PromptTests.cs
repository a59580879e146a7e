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
}
