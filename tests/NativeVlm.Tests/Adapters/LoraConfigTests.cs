using NativeVlm.Adapters;
using NativeVlm.Models;
using Xunit;

namespace NativeVlm.Tests.Adapters;

/// <summary>adapter_config.json: PEFT's fields, defaults and text format; the options NativeVlm refuses.</summary>
public class LoraConfigTests
{
    /// <summary>A config made here is the file PEFT's save_pretrained wrote for the same LoraConfig arguments.</summary>
    [Theory]
    [Trait("Category", Fixtures.Category)]
    [InlineData("tiny-idefics3-lora", false)]
    [InlineData("tiny-idefics3-dora", true)]
    public void A_new_config_is_written_exactly_as_peft_writes_it(string fixture, bool useDora)
    {
        string peft = File.ReadAllText(Fixtures.Path(fixture, LoraConfig.FileName));
        var regex = TargetModules.FromPattern(LoraConfig.Parse(peft, fixture).TargetModules.Pattern!);

        LoraConfig config = LoraConfig.Create(regex, r: 8, loraAlpha: 8, loraDropout: 0.0, useDora: useDora,
            baseModelNameOrPath: "tiny-idefics3", taskType: "CAUSAL_LM");

        Assert.Equal(peft, config.ToJson());
    }

    [Fact]
    public void Fields_take_their_typed_values_and_absent_ones_peft_defaults()
    {
        LoraConfig config = LoraConfig.Parse("""
            {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "use_rslora": true, "use_dora": true,
             "init_lora_weights": "gaussian", "target_modules": ["q_proj", "v_proj"]}
            """, "test");

        Assert.Equal(16, config.R);
        Assert.Equal(32, config.LoraAlpha);
        Assert.Equal(0.05, config.LoraDropout);
        Assert.True(config.UseDora);
        Assert.Equal(LoraInit.Gaussian, config.InitLoraWeights);
        Assert.Equal(["q_proj", "v_proj"], config.TargetModules.Names!);
        // rsLoRA: alpha / √r.
        Assert.Equal(32 / 4.0, config.Scaling(16, 32));
        Assert.Contains("\"megatron_core\": \"megatron.core\"", config.ToJson());
        Assert.Contains("\"inference_mode\": true", config.ToJson());
    }

    /// <summary>PEFT picks a module's rank and alpha by the first pattern key that matches the end of its name after a dot.</summary>
    [Fact]
    public void Rank_and_alpha_patterns_apply_per_module()
    {
        LoraConfig config = LoraConfig.Parse("""
            {"r": 8, "lora_alpha": 8, "target_modules": ".*",
             "rank_pattern": {"q_proj": 4, "layers\\.1\\.mlp\\.down_proj": 2}, "alpha_pattern": {"down_proj": 16}}
            """, "test");

        Assert.Equal((4, 8.0), config.RankAndAlpha("model.text_model.layers.0.self_attn.q_proj"));
        Assert.Equal((8, 8.0), config.RankAndAlpha("model.text_model.layers.0.self_attn.k_proj"));
        Assert.Equal((8, 16.0), config.RankAndAlpha("model.text_model.layers.0.mlp.down_proj"));
        // The first matching key decides for both: the rank key matches, and alpha_pattern has no such key.
        Assert.Equal((2, 8.0), config.RankAndAlpha("model.text_model.layers.1.mlp.down_proj"));
        // "q_proj" must follow a dot: "xq_proj" is another module.
        Assert.Equal((8, 8.0), config.RankAndAlpha("model.text_model.layers.0.self_attn.xq_proj"));
    }

    [Theory]
    [InlineData("bias", "\"all\"")]
    [InlineData("fan_in_fan_out", "true")]
    [InlineData("init_lora_weights", "\"pissa\"")]
    [InlineData("init_lora_weights", "\"loftq\"")]
    [InlineData("layers_to_transform", "[0]")]
    [InlineData("modules_to_save", "[\"lm_head\"]")]
    [InlineData("lora_dropout", "1.0")]
    [InlineData("r", "0")]
    [InlineData("target_modules", "null")]
    [InlineData("peft_type", "\"IA3\"")]
    [InlineData("lora_bias", "true")]
    public void Options_that_change_the_computation_and_are_not_implemented_are_errors_naming_the_field(string field, string value)
    {
        string targets = field == "target_modules" ? "" : "\"target_modules\": [\"q_proj\"], ";
        string json = $$"""{{{targets}}"{{field}}": {{value}}}""";

        var e = Assert.Throws<ConfigException>(() => LoraConfig.Parse(json, "adapter_config.json"));

        Assert.Equal(field, e.JsonPath);
        Assert.Contains(field, e.Message);
        Assert.StartsWith("adapter_config.json", e.Message);
    }

    [Theory]
    [InlineData(0.1, "0.1")]
    [InlineData(0.0, "0.0")]
    [InlineData(-0.0, "-0.0")]
    [InlineData(8.0, "8.0")]
    [InlineData(-2.5, "-2.5")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(0.30000000000000004, "0.30000000000000004")]
    [InlineData(123456.789, "123456.789")]
    [InlineData(1e15, "1000000000000000.0")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1.7976931348623157e308, "1.7976931348623157e+308")]
    [InlineData(5e-324, "5e-324")]
    public void Floats_are_written_as_python_repr(double value, string repr) =>
        Assert.Equal(repr, PythonJson.FloatRepr(value));

    [Fact]
    public void Strings_are_escaped_as_python_json_dumps()
    {
        LoraConfig config = LoraConfig.Create(TargetModules.FromPattern(@".*\.(q|k)_proj"), baseModelNameOrPath: "dir/\"name\" é");

        Assert.Contains(@"""target_modules"": "".*\\.(q|k)_proj""", config.ToJson());
        Assert.Contains(@"""base_model_name_or_path"": ""dir/\""name\"" \u00e9""", config.ToJson());
    }
}
