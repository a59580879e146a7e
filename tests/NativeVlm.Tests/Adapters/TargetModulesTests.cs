using System.Text.Json;
using NativeVlm.Adapters;
using NativeVlm.Models;
using Xunit;

namespace NativeVlm.Tests.Adapters;

/// <summary>target_modules as PEFT matches it, on tiny-idefics3's Linear modules (from its config).</summary>
[Trait("Category", Fixtures.Category)]
public class TargetModulesTests
{
    private static IReadOnlyList<string> ModuleNames() =>
        Idefics3Model.LinearShapes(Idefics3Config.Load(Fixtures.Path("tiny-idefics3"))).Select(l => l.Name).ToList();

    /// <summary>The seeds' list adapts the vision tower's q/k/v as well: exactly PEFT's adapted modules, in module order.</summary>
    [Fact]
    public void A_list_matches_by_suffix_including_the_vision_q_k_v()
    {
        const string fixture = "tiny-idefics3-dora-seedcfg";
        LoraConfig config = LoraConfig.Load(Fixtures.Path(fixture));
        using JsonDocument info = JsonDocument.Parse(File.ReadAllText(Fixtures.Path(fixture, "peft_info.json")));
        string[] peftAdapted = info.RootElement.GetProperty("adapted_modules").EnumerateArray().Select(e => e.GetString()!).ToArray();

        IReadOnlyList<string> selected = config.TargetModules.Select(ModuleNames(), config.Source);

        Assert.Equal(peftAdapted, selected);
        Assert.Contains("model.vision_model.encoder.layers.0.self_attn.q_proj", selected);
        Assert.DoesNotContain("model.vision_model.encoder.layers.0.self_attn.out_proj", selected);
        Assert.DoesNotContain("model.connector.modality_projection.proj", selected);
    }

    /// <summary>The fixtures' regex must match whole names: it takes the 14 text projections and no vision one.</summary>
    [Fact]
    public void A_string_is_a_regex_that_must_match_the_whole_name()
    {
        LoraConfig config = LoraConfig.Load(Fixtures.Path("tiny-idefics3-dora"));
        IReadOnlyList<string> names = ModuleNames();

        IReadOnlyList<string> selected = config.TargetModules.Select(names, config.Source);

        Assert.Equal(names.Where(n => n.StartsWith("model.text_model.", StringComparison.Ordinal)), selected);
        // As a regex, "q_proj" only matches a module named exactly that: a substring is not enough.
        Assert.Throws<ConfigException>(() => TargetModules.FromPattern("q_proj").Select(names, "test"));
        int textLayers = Idefics3Config.Load(Fixtures.Path("tiny-idefics3")).Text.NumHiddenLayers;
        Assert.Equal(2 * textLayers, TargetModules.FromPattern(@".*\.(q|k)_proj").Select(names, "test").Count(n => n.Contains("text_model")));
    }

    [Fact]
    public void A_suffix_matches_only_whole_name_components()
    {
        IReadOnlyList<string> selected = TargetModules.FromNames("proj").Select(ModuleNames(), "test");

        Assert.Equal(["model.connector.modality_projection.proj"], selected);
    }

    [Fact]
    public void All_linear_takes_every_linear_module()
    {
        IReadOnlyList<string> names = ModuleNames();

        Assert.Equal(names, TargetModules.FromPattern("all-linear").Select(names, "test"));
    }

    /// <summary>lora_target_modules=all-linear, as nativevlm train and the demo give it: PEFT's string form, not a module name.</summary>
    [Fact]
    public void An_argument_of_all_linear_alone_is_the_string_form_and_others_are_names()
    {
        IReadOnlyList<string> names = ModuleNames();

        TargetModules allLinear = TargetModules.FromArgument(["all-linear"]);
        TargetModules listed = TargetModules.FromArgument(["q_proj", "v_proj"]);

        Assert.Equal("all-linear", allLinear.Pattern);
        Assert.Equal(names, allLinear.Select(names, "test"));
        Assert.Equal(["q_proj", "v_proj"], listed.Names);
    }

    /// <summary>A target that adapts nothing is a mistake worth an error; it lists every module name to pick from.</summary>
    [Fact]
    public void A_target_that_matches_nothing_is_an_error_listing_the_module_names()
    {
        IReadOnlyList<string> names = ModuleNames();

        var list = Assert.Throws<ConfigException>(() => TargetModules.FromNames("q_proj", "qkv_proj").Select(names, "adapter_config.json"));
        var pattern = Assert.Throws<ConfigException>(() => TargetModules.FromPattern(@".*\.attn\.q_proj").Select(names, "adapter_config.json"));

        foreach (ConfigException e in new[] { list, pattern })
        {
            Assert.Equal("target_modules", e.JsonPath);
            Assert.All(names, name => Assert.Contains(name, e.Message));
        }
        Assert.Contains("'qkv_proj'", list.Message);
        Assert.DoesNotContain("'q_proj'", list.Message);
        Assert.Contains(@".*\.attn\.q_proj", pattern.Message);
    }
}
