using NativeVlm.Training;
using Xunit;

namespace NativeVlm.Tests.Training;

public sealed class TrainingArgumentsTests
{
    [Fact]
    public void JsonConfigThenOverridesByTrlNames()
    {
        TrainingArguments args = TrainingArguments.FromJson("""
            {"output_dir": "out", "learning_rate": 5e-6, "per_device_train_batch_size": 2, "lora_target_modules": ["q_proj", "v_proj"],
             "loss_type": ["sigmoid", "sft"], "loss_weights": [0.8, 0.2], "eval_steps": null, "gradient_checkpointing": true}
            """, "config.json");
        args.Set("learning_rate", "1e-5");

        Assert.Equal("out", args.OutputDir);
        Assert.Equal(1e-5, args.LearningRate);
        Assert.Equal(2, args.PerDeviceTrainBatchSize);
        Assert.Equal(["q_proj", "v_proj"], args.LoraTargetModules);
        Assert.Equal(["sigmoid", "sft"], args.LossType);
        Assert.Equal([0.8, 0.2], args.LossWeights!);
        Assert.Null(args.EvalSteps);
        Assert.True(args.GradientCheckpointing);
        args.Validate();
    }

    [Theory]
    [InlineData("gradient_accumulation_steps", "0", "gradient_accumulation_steps must be at least 1")]
    [InlineData("lr_scheduler_type", "exponential", "lr_scheduler_type 'exponential' is not one of")]
    [InlineData("loss_type", "sigmoid,kto", "loss_type 'kto' is not one of")]
    [InlineData("loss_weights", "1,2", "loss_weights has 2 weights for 1 loss types")]
    [InlineData("quant", "int8", "quant 'int8' is not one of nf4, none")]
    [InlineData("device", "gpu", "device 'gpu' is not cpu, cuda or cuda:N")]
    [InlineData("train_modules", "vision", "train_modules 'vision' is not one of connector")]
    public void InvalidValueNamesItsField(string field, string value, string message)
    {
        var args = new TrainingArguments { OutputDir = "out", LoraTargetModules = ["q_proj"] };
        args.Set(field, value);
        var e = Assert.Throws<ArgumentException>(args.Validate);
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void UnknownOrMalformedFieldIsAnErrorNamingIt()
    {
        var unknown = Assert.Throws<ArgumentException>(() => TrainingArguments.FromJson("""{"learning_rat": 1}""", "cfg.json"));
        Assert.Equal("cfg.json: unknown training argument 'learning_rat'", unknown.Message);
        var malformed = Assert.Throws<ArgumentException>(() => new TrainingArguments().Set("max_steps", "ten"));
        Assert.Equal("max_steps: 'ten' is not an integer", malformed.Message);
    }

    [Fact]
    public void NothingToTrainIsAnError()
    {
        var e = Assert.Throws<ArgumentException>(new TrainingArguments { OutputDir = "out" }.Validate);
        Assert.StartsWith("lora_target_modules nothing to train", e.Message);
    }
}
