using NativeVlm.Demo;
using NativeVlm.Generation;
using NativeVlm.Models;
using Xunit;

namespace NativeVlm.Tests.Generation;

/// <summary>generation_config.json as the defaults of generate, and the eos and pad ids it resolves to.</summary>
public sealed class GenerationConfigTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    [Fact]
    public void A_snapshot_without_the_file_has_no_defaults()
    {
        Assert.Equal(GenerationConfig.Empty, GenerationConfig.Load(_dir.Root));
    }

    [Fact]
    public void The_file_gives_the_decoding_defaults_and_an_eos_list()
    {
        File.WriteAllText(_dir.Path(GenerationConfig.FileName),
            """{"do_sample": true, "temperature": 0.7, "top_k": 7, "top_p": 0.9, "max_new_tokens": 33, "eos_token_id": [2, 5], "pad_token_id": 1}""");

        GenerationConfig config = GenerationConfig.Load(_dir.Root);

        Assert.Equal(new GenerationConfig(true, 0.7, 7, 0.9, 33, config.EosTokenIds, 1), config);
        Assert.Equal([2, 5], config.EosTokenIds!);
    }

    [Fact]
    public void Eos_ids_come_from_the_file_else_the_text_config_and_add_the_end_of_utterance_once()
    {
        DemoSnapshot.Create(_dir.Root, seed: 0);
        Idefics3Config model = Idefics3Config.Load(_dir.Root);
        int endOfUtterance = DemoSnapshot.TokenId(DemoSnapshot.EndOfUtterance);
        File.WriteAllText(_dir.Path(GenerationConfig.FileName), """{"eos_token_id": 7}""");

        Assert.Equal([7, endOfUtterance], GenerationConfig.Load(_dir.Root).ResolveEosTokenIds(model, endOfUtterance));
        IReadOnlyList<int> fromModel = GenerationConfig.Empty.ResolveEosTokenIds(model, endOfUtterance);
        Assert.Equal(fromModel.Count, fromModel.Distinct().Count());
        Assert.Equal(model.Text.EosTokenIds.Union([endOfUtterance]).Order(), fromModel.Order());
        Assert.Equal(model.Text.EosTokenIds, GenerationConfig.Empty.ResolveEosTokenIds(model, endOfUtterance: null));
    }

    [Fact]
    public void A_field_of_the_wrong_type_is_named()
    {
        File.WriteAllText(_dir.Path(GenerationConfig.FileName), """{"top_k": "many"}""");

        var e = Assert.Throws<ConfigException>(() => GenerationConfig.Load(_dir.Root));

        Assert.Equal("top_k", e.JsonPath);
        Assert.EndsWith("top_k must be an integer, is \"many\"", e.Message);
    }

    public void Dispose() => _dir.Dispose();
}
