using System.Text.Json;
using NativeVlm.Adapters;
using NativeVlm.Models;
using NativeVlm.Tensors;
using Xunit;

namespace NativeVlm.Tests.Adapters;

/// <summary>PEFT's print_trainable_parameters() from config.json alone, against PEFT's own counts.</summary>
[Trait("Category", Fixtures.Category)]
public class ParameterCountTests
{
    /// <summary>SmolVLM-Instruct, -256M and -500M with the seeds' DoRA config and its LoRA twin: param-counts.json's printed lines.</summary>
    [Fact]
    public void Real_smolvlm_configs_print_peft_counts()
    {
        string path = Fixtures.Path("param-counts", "param-counts.json");
        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement adapters = document.RootElement.GetProperty("adapters");
        int checkedCount = 0;
        foreach (JsonProperty model in document.RootElement.GetProperty("models").EnumerateObject())
        {
            Idefics3Config config = Idefics3Config.Parse(model.Value.GetProperty("config").GetRawText(), $"{path}:{model.Name}");
            foreach (JsonProperty counts in model.Value.GetProperty("counts").EnumerateObject())
            {
                LoraConfig adapter = LoraConfig.Parse(adapters.GetProperty(counts.Name).GetRawText(), $"{path}:adapters.{counts.Name}");

                PeftParameterCounts actual = PeftParameterCounts.FromConfig(config, adapter);

                string context = $"{model.Name} with {counts.Name}";
                Assert.True(counts.Value.GetProperty("base_params").GetInt64() == Idefics3Model.ParameterCount(config), context);
                Assert.True(counts.Value.GetProperty("trainable_params").GetInt64() == actual.Trainable, context);
                Assert.True(counts.Value.GetProperty("all_params").GetInt64() == actual.All, context);
                Assert.Equal(counts.Value.GetProperty("printed").GetString(), actual.ToString());
                checkedCount++;
            }
        }
        Assert.True(checkedCount > 0, "param-counts.json lists no model × adapter counts");
    }

    /// <summary>The issue's own number, SmolVLM-Instruct with the seeds' DoRA config.</summary>
    [Fact]
    public void SmolVLM_Instruct_with_the_seeds_dora_config_prints_the_issue_line()
    {
        string path = Fixtures.Path("param-counts", "param-counts.json");
        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
        Idefics3Config config = Idefics3Config.Parse(
            document.RootElement.GetProperty("models").GetProperty("HuggingFaceTB/SmolVLM-Instruct").GetProperty("config").GetRawText(), path);
        LoraConfig seeds = LoraConfig.Create(TargetModules.FromNames("down_proj", "o_proj", "k_proj", "q_proj", "gate_proj", "up_proj", "v_proj"),
            r: 8, loraAlpha: 8, loraDropout: 0.1, useDora: true, initLoraWeights: LoraInit.Gaussian);

        Assert.Equal("trainable params: 11,269,248 || all params: 2,257,542,128 || trainable%: 0.4992",
            PeftParameterCounts.FromConfig(config, seeds).ToString());
    }

    /// <summary>Counting from the config agrees with the built tiny model and its adapters, and both with PEFT's count.</summary>
    [Fact]
    public void Seedcfg_counts_from_config_and_from_the_built_model_equal_peft()
    {
        const string fixture = "tiny-idefics3-dora-seedcfg";
        using JsonDocument info = JsonDocument.Parse(File.ReadAllText(Fixtures.Path(fixture, "peft_info.json")));
        JsonElement peft = info.RootElement.GetProperty("print_trainable_parameters");
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path("tiny-idefics3"), ctx);
        using LoraAdapterSet adapters = LoraAdapterSet.Load(model.Linears, Fixtures.Path(fixture));

        PeftParameterCounts fromConfig = PeftParameterCounts.FromConfig(model.Config, adapters.Config);
        PeftParameterCounts built = PeftParameterCounts.Of(model, adapters);

        Assert.Equal(new PeftParameterCounts(peft.GetProperty("trainable_params").GetInt64(), peft.GetProperty("all_params").GetInt64()), fromConfig);
        Assert.Equal(fromConfig, built);
        Assert.Equal(peft.GetProperty("printed").GetString(), fromConfig.ToString());
    }

    private static readonly string[] ModelFixtures = ["tiny-idefics3", "tiny-qwen3-smvl"];

    public static TheoryData<string> Models => [.. ModelFixtures];

    /// <summary>The config-only descriptions used for counting match what Load builds.</summary>
    [Theory]
    [MemberData(nameof(Models))]
    public void Linear_shapes_and_parameter_count_from_config_match_the_loaded_model(string fixture)
    {
        using Context ctx = Context.Create(DeviceKind.Cpu);
        using Idefics3Model model = Idefics3Model.Load(Fixtures.Path(fixture), ctx);

        Assert.Equal(Idefics3Model.LinearShapes(model.Config), model.Linears.Select(l => l.Shape));
        Assert.Equal(Idefics3Model.ParameterCount(model.Config), model.Parameters.Sum(p => p.ElementCount));
    }

    /// <summary>The count from config equals the sum over every tensor save_pretrained writes, for the real configs too.</summary>
    [Fact]
    public void Parameter_count_from_config_equals_the_checkpoint_tensors_it_implies()
    {
        string path = Fixtures.Path("param-counts", "param-counts.json");
        using JsonDocument document = JsonDocument.Parse(File.ReadAllText(path));
        IEnumerable<Idefics3Config> configs = document.RootElement.GetProperty("models").EnumerateObject()
            .Select(m => Idefics3Config.Parse(m.Value.GetProperty("config").GetRawText(), path))
            .Concat(ModelFixtures.Select(m => Idefics3Config.Load(Fixtures.Path(m))));

        foreach (Idefics3Config config in configs)
        {
            long fromTensors = ExpectedTensors.Of(config).Values.Sum(shape => shape.Aggregate(1L, (a, d) => a * d));
            Assert.Equal(fromTensors, Idefics3Model.ParameterCount(config));
        }
    }
}
